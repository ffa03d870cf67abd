"""The operations page in a real browser: Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright drives /usr/bin/chromium (installed by .ci/run).
The server is pytest-django's live server in this process; the connections are
channels on the Redis channel layer, registered under a label as a consumer would.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

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
def chromium_page():
    """A page of headless Chromium. Playwright runs an event loop in this thread
    while it is open, so the database and async_to_sync are used outside it."""
    if not os.path.exists(CHROMIUM):
        service_missing("needs Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def operator(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser(
        "olga", "olga@example.org", PASSWORD
    )


@pytest.fixture
def live_label(settings, var_dir):
    """Two connections on a label, as two consumers would register them."""
    from channels.layers import get_channel_layer

    from apps.connections.registry import get_registry

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

    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    for channel in channels:
        assert receive(layer, channel)["type"] == "connections.reload"


def see_the_page_and_force_reload(page, url: str, label: str) -> None:
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    page.click("#ops-link a")
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
