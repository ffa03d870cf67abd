"""The production settings served for real: uvicorn as the django container runs it.

Static files collected first (as the image's build does), then the health probe the
container's healthcheck runs, plain-HTTP probes, and WhiteNoise's cache headers.
"""

from __future__ import annotations

import gzip
import http.client
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.connections.server import ROOT, Server, server_env

HOST = "stagehand.example.com"
# What Caddy forwards, and so what apps.ops.probe sends.
PROXIED = {"Host": HOST, "X-Forwarded-Proto": "https"}
FOREVER = "max-age=315360000, public, immutable"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    root = tmp_path_factory.mktemp("production")
    base = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE"
        and not k.startswith(("AWS_", "REDIS_", "CELERY_", "DJANGO_", "EMAIL_"))
        and k != "DATABASE_URL"
    }
    env = server_env(
        base,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="x9!Fq2@Lr7#Vm4$Tz8%Wb1^Hc6&Jn3*Pd5(Ks0)Yg-e_u+i=o~a;s:d,f.g/h",
        DJANGO_ALLOWED_HOSTS=f"{HOST},www.{HOST}",
        DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}",
        DJANGO_STATIC_ROOT=str(root / "static"),
        STAGEHAND_VAR_DIR=str(root / "var"),
    )
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr
    assert (root / "static" / "staticfiles.json").exists()
    # As compose/production/django/start runs it: behind Caddy, access log on.
    server = Server(
        env,
        settings_module="config.settings.production",
        log_level="info",
        extra_args=("--proxy-headers", "--forwarded-allow-ips=*"),
    )
    try:
        server.wait_ready(headers=PROXIED)
        yield SimpleNamespace(server=server, env=env, static=root / "static")
    finally:
        server.stop()


def get(server: Server, path: str, headers: dict) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def run_probe(production, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apps.ops.probe", *args],
        cwd=ROOT,
        env=production.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_the_probe_passes_through_the_path_every_request_takes(production, path):
    result = run_probe(production, f"http://127.0.0.1:{production.server.port}{path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_probes_log_no_error(production):
    before = len(production.server.output())
    for _ in range(5):
        url = f"http://127.0.0.1:{production.server.port}/readyz"
        assert run_probe(production, url).returncode == 0
    log = production.server.output()[before:]
    assert log.count('"GET /readyz HTTP/1.1" 200') == 5, log  # the log is seen
    assert "ERROR" not in log and "Traceback" not in log and "Warning" not in log


def test_the_probe_prints_what_went_wrong(production):
    port = production.server.port
    result = run_probe(production, f"http://127.0.0.1:{port}/readyz-nope")
    assert result.returncode == 1
    assert result.stdout.startswith(f"http://127.0.0.1:{port}/readyz-nope: HTTP 404")
    with socket.socket() as unused:  # bound, never listening: connection refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/readyz"
        result = run_probe(production, url)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{url}: no answer (ConnectionRefusedError")


def test_health_paths_answer_plain_http_while_the_rest_is_redirected(production):
    plain = {"Host": HOST}
    for path in ("/readyz", "/healthz"):
        assert get(production.server, path, plain).status == 200
    login = get(production.server, "/admin/login/", plain)
    assert login.status == 301
    assert login.headers["Location"] == f"https://{HOST}/admin/login/"


def test_admin_css_is_served_hashed_compressed_and_cached_for_ever(production):
    before = len(production.server.output())
    page = get(production.server, "/admin/login/", PROXIED)
    assert page.status == 200
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.body)
    assert css, page.body[:2000]
    path = css.group(1).decode()
    response = get(production.server, path, {**PROXIED, "Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Cache-Control"] == FOREVER
    assert response.headers["Content-Encoding"] == "gzip"
    collected = Path(production.static, path.removeprefix("/static/"))
    assert gzip.decompress(response.body) == collected.read_bytes()
    # A name without its hash may change content: cached briefly only.
    unhashed = get(production.server, "/static/admin/css/base.css", PROXIED)
    assert unhashed.status == 200
    assert unhashed.headers["Cache-Control"] == "max-age=60, public"
    # Streamed to the ASGI server without Django's warning (apps.core.middleware).
    log = production.server.output()[before:]
    assert f'"GET {path} HTTP/1.1" 200' in log
    assert "Warning" not in log and "ERROR" not in log
