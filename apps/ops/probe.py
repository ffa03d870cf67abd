"""The container's health probe: ``python -m apps.ops.probe http://127.0.0.1:5000/readyz``.

It asks exactly as Caddy forwards a request, so the healthcheck passes through the
same code path as every visitor's request: ``Host`` is the first DJANGO_ALLOWED_HOSTS
entry (or ``--host``), ``X-Forwarded-Proto: https``. Exit 0 on 200; otherwise print
the status (or why there was no answer) and exit 1. Standard library only, and no
Django: it starts in milliseconds, every few seconds, beside the server.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from urllib.parse import urlsplit

TIMEOUT = 4.0  # under the compose healthcheck's 5 s timeout


def default_host() -> str:
    """The first DJANGO_ALLOWED_HOSTS entry (or DJANGO_ALLOWED_HOSTS_FILE's), as a Host.

    ``*`` and an empty list allow any host; ``.example.com`` allows example.com.
    """
    path = os.environ.get("DJANGO_ALLOWED_HOSTS_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            hosts = f.read()
    else:
        hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "")
    first = next((h.strip() for h in hosts.split(",") if h.strip()), "*")
    return "localhost" if first == "*" else first.lstrip(".")


def probe(url: str, host: str, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Return the status and the start of the body of a GET of ``url``; no redirects."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    connection_class = (
        http.client.HTTPSConnection
        if parts.scheme == "https"
        else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(
            "GET",
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            headers={"Host": host, "X-Forwarded-Proto": "https"},
        )
        response = connection.getresponse()
        return response.status, response.read(500).decode("utf-8", "replace")
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.ops.probe",
        description="GET a health URL as the proxy would; exit 0 on 200.",
    )
    parser.add_argument("url", help="e.g. http://127.0.0.1:5000/readyz")
    parser.add_argument(
        "--host", help="the Host header (default: first DJANGO_ALLOWED_HOSTS entry)"
    )
    args = parser.parse_args(argv)
    try:
        status, body = probe(args.url, args.host or default_host())
    except ValueError as exc:
        parser.error(str(exc))
    except (OSError, http.client.HTTPException) as exc:
        print(f"{args.url}: no answer ({type(exc).__name__}: {exc})")
        return 1
    if status == 200:
        return 0
    print(f"{args.url}: HTTP {status} {body.strip()[:300]}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
