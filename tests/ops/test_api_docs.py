"""Swagger UI (/api/docs/) and Redoc (/api/redoc/) come from our own static files
(drf-spectacular-sidecar): they work without internet, and nothing loads from a CDN."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

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
