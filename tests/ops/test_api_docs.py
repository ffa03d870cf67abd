"""Swagger UI (/api/docs/) and Redoc (/api/redoc/) come from our own static files
(drf-spectacular-sidecar): they work without internet, and nothing loads from a CDN."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client

from tests.ops.test_admin_browser import chromium_page

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def assets_of(html: str) -> list[str]:
    return ASSET.findall(html)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_api_pages_load_only_our_own_assets(client, alice, page):
    client.force_login(alice)
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/schema/" in html
    assets = assets_of(html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith(settings.STATIC_URL + "drf_spectacular_sidecar/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content)
    # No other origin anywhere in the page (a CDN's script, font or style).
    assert not re.search(r"https?://(?!testserver)", html), html


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_api_pages_need_staff(client, page):
    assert client.get(page).status_code in (401, 403)


@pytest.mark.parametrize(
    ("page_path", "rendered"),
    [("/api/docs/", ".opblock-summary-path"), ("/api/redoc/", "[data-section-id]")],
)
def test_the_pages_render_in_a_browser_without_another_site(
    live_server, transactional_db, django_user_model, page_path, rendered
):
    """Chromium renders each page (the operations appear, so the scripts ran and
    read the schema), and nothing goes to another site: every request is to our
    server, or was refused by the page's own Content Security Policy (Redoc's)."""
    operator = django_user_model.objects.create_superuser(
        "olga", "olga@example.org", "correct horse battery"
    )
    client = Client()
    client.force_login(operator)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    with chromium_page() as page:
        page.context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": session,
                    "url": live_server.url,
                }
            ]
        )
        requested: list[str] = []
        blocked: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on(
            "requestfailed",
            lambda request: (
                "csp" in (request.failure or "").lower() and blocked.append(request.url)
            ),
        )
        page.goto(live_server.url + page_path)
        page.wait_for_selector(rendered, timeout=30_000)
        assert "/api/v1/worlds/" in page.content()
        page.wait_for_load_state("networkidle")
    assert requested
    # blob: is the page's own worker (Redoc's search), made from our script.
    ours = (live_server.url, "blob:" + live_server.url)
    elsewhere = [u for u in requested if not u.startswith(ours)]
    # Redoc's badge asks for its logo on Redocly's CDN; the browser refuses.
    assert elsewhere == blocked, elsewhere
