"""The operations page in a real browser: Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright drives /usr/bin/chromium (installed by .ci/run).
The server is pytest-django's live server in this process; the connections are
channels on the Redis channel layer, registered under a label as a consumer would.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from io import BytesIO

import pytest
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone
from PIL import Image
from playwright.sync_api import sync_playwright

from apps.connections.registry import get_registry
from apps.jobs import services as jobs
from apps.jobs.models import JobRun
from tests.conftest import service_missing
from tests.ops.helpers import connect, receive

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"


@contextmanager
def chromium_page(color_scheme: str = "light"):
    """A page of headless Chromium. Playwright runs an event loop in this thread
    while it is open, so the database and async_to_sync are used outside it."""
    if not os.path.exists(CHROMIUM):
        service_missing("needs Debian's chromium: apt-get install -y chromium")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page(color_scheme=color_scheme)
        finally:
            browser.close()


def outside_the_browser_loop(function, *args):
    """Call ``function`` in another thread: the ORM refuses to run in this one while
    Playwright's event loop does. The thread's connection is closed after it, or
    the test database could not be dropped."""

    def call():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def log_in(page, url: str) -> None:
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


@pytest.fixture
def operator(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser(
        "olga", "olga@example.org", PASSWORD
    )


@pytest.fixture
def live_label(settings, var_dir):
    """Two connections on a label, as two consumers would register them."""
    layer = get_channel_layer()
    registry = get_registry()
    registry.clear()
    channels = [connect(layer, "0ldbu1ld.production") for _ in range(2)]
    yield "0ldbu1ld.production", channels
    registry.clear()


@pytest.mark.redis
def test_operator_logs_in_sees_the_page_and_force_reloads_a_label(
    live_server, operator, live_label
):
    label, channels = live_label
    with chromium_page() as page:
        see_the_page_and_force_reload(page, live_server.url, label)

    layer = get_channel_layer()
    for channel in channels:
        assert receive(layer, channel)["type"] == "connections.reload"


def see_the_page_and_force_reload(page, url: str, label: str) -> None:
    log_in(page, url)

    page.click(".app-ops a[href='/admin/operations/']")
    assert page.locator("h1").inner_text() == "Operations"
    database = page.locator("#ops-stats tr[data-component=database]")
    assert "ok" in database.inner_text()
    row = page.locator(f"#ops-connections tr[data-label='{label}']")
    assert row.locator("td").nth(1).inner_text() == "2"

    row.locator("input[name=interval]").fill("10")
    row.locator("button[value=reload]").click()

    success = page.locator(".messagelist .success")
    assert success.inner_text() == f"Reloaded 2 connections (labels: {label})"
    assert "No live connections." in page.locator("#ops-connections").inner_text()


# --------------------------------------------------------------------------- the page


TRACEBACK = """Traceback (most recent call last):
  File "/app/apps/jobs/services.py", line 240, in execute
    return job.function(*args, **kwargs)
  File "/app/apps/jobs/tasks.py", line 27, in error_test
    raise DeliberateError("error-test: this failure is deliberate")
apps.jobs.tasks.DeliberateError: error-test: this failure is deliberate"""


def record_runs() -> dict:
    """A failed run three minutes ago, a successful one, and a nightly schedule."""
    now = timezone.now()
    failed = JobRun.objects.create(
        job="error-test",
        trigger="shell",
        outcome="failure",
        started_at=now - timedelta(minutes=3, seconds=5),
        duration=0.0008206909999444179,
        error=TRACEBACK,
    )
    done = JobRun.objects.create(
        job="log-test",
        trigger="beat",
        outcome="success",
        started_at=now - timedelta(hours=2),
        duration=75.5,
        result="logged 'log-test' at debug, info, warning and error",
    )
    jobs.schedule("0 3 * * *", "log-test")
    return {"failed": failed.pk, "done": done.pk}


def new_run() -> int:
    return JobRun.objects.create(job="cache_flush", trigger="admin").pk


def test_the_page_humanizes_links_runs_shows_tracebacks_and_refreshes(
    live_server, operator, var_dir
):
    runs = outside_the_browser_loop(record_runs)
    with chromium_page() as page:
        log_in(page, live_server.url)
        # The sidebar of any admin page leads to the operations page.
        page.goto(f"{live_server.url}/admin/jobs/jobrun/")
        page.click("#nav-sidebar .app-ops a[href='/admin/operations/']")
        assert page.locator("h1").inner_text() == "Operations"

        failed = page.locator(f"#ops-runs tr[data-run='{runs['failed']}']")
        started = failed.locator("time")
        # Django's timesince keeps number and unit together with a no-break space.
        assert started.inner_text().replace("\xa0", " ") == "3 minutes ago"
        assert started.get_attribute("title").endswith(" UTC")  # the exact time
        assert failed.locator("td").nth(5).inner_text() == "1 ms"
        done = page.locator(f"#ops-runs tr[data-run='{runs['done']}']")
        assert done.locator("td").nth(5).inner_text() == "1m 15s"
        assert done.locator("time").inner_text().replace("\xa0", " ") == "2 hours ago"

        # The error's last line, and the whole traceback one click away.
        error = failed.locator("details.ops-error")
        summary = (
            "apps.jobs.tasks.DeliberateError: error-test: this failure is deliberate"
        )
        assert error.locator("summary").inner_text() == summary
        assert not error.locator("pre").is_visible()
        error.locator("summary").click()
        assert error.locator("pre").inner_text() == TRACEBACK

        # The next run of the nightly schedule.
        nightly = page.locator("#ops-schedules tr", has_text="log-test")
        assert nightly.locator("td").nth(3).inner_text().startswith("in ")

        # A run recorded after the page loaded appears on the next refresh, and the
        # traceback the operator opened stays open.
        assert page.locator("#ops-auto-refresh").is_checked()
        latest = outside_the_browser_loop(new_run)
        page.evaluate("window.opsRefresh()")
        page.wait_for_selector(f"#ops-runs tr[data-run='{latest}']")
        assert error.locator("pre").is_visible()

        # Each run links to its admin page.
        failed.locator("td a").first.click()
        assert page.url.endswith(f"/admin/jobs/jobrun/{runs['failed']}/change/")
        assert "deliberate" in page.locator("#content").inner_text()


# --------------------------------------------------------------------------- contrast


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2's relative luminance of an sRGB colour."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def measured_contrast(png: bytes) -> float:
    """The contrast of text in a screenshot of one badge: its commonest colour is the
    ground, and the pixel that differs most from it is the core of a glyph."""
    pixels = list(Image.open(BytesIO(png)).convert("RGB").get_flattened_data())
    ground = Counter(pixels).most_common(1)[0][0]
    return max(contrast_ratio(ground, pixel) for pixel in set(pixels))


def record_failure() -> None:
    JobRun.objects.create(job="error-test", trigger="shell", outcome="failure")
    JobRun.objects.create(job="log-test", trigger="shell", outcome="success")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_status_text_has_wcag_aa_contrast(live_server, operator, var_dir, scheme):
    outside_the_browser_loop(record_failure)
    with chromium_page(color_scheme=scheme) as page:
        log_in(page, live_server.url)
        page.goto(f"{live_server.url}/admin/operations/")
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        # The scheme really changed: the admin's own dark ground is #121212.
        assert body == ("rgb(18, 18, 18)" if scheme == "dark" else "rgb(255, 255, 255)")
        badges = page.locator(".ops-badge")
        texts = set()
        for i in range(badges.count()):
            badge = badges.nth(i)
            texts.add(badge.inner_text())
            ratio = measured_contrast(badge.screenshot())
            assert ratio >= 4.5, f"{badge.inner_text()!r}: {ratio:.2f}:1 in {scheme}"
        assert {"ok", "success", "failure"} <= texts

        # The check tells: the old style, the success background's pale green as
        # the text colour on the page's ground, fails it.
        page.add_style_tag(
            content=".ops-ok { color: var(--message-success-bg); background: none; }"
        )
        old = page.locator("#ops-stats .ops-ok").first
        assert measured_contrast(old.screenshot()) < 4.5
