"""HTTPS and WebSocket clients that reach Caddy on 127.0.0.1 under the site's name.

Caddy serves DOMAIN with its internal CA in the test; the clients trust exactly that
CA (read from Caddy's data volume) and send the site's name as SNI and Host, as a
browser resolving DOMAIN to this host would.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass

from websockets.sync.client import connect


@dataclass
class Site:
    domain: str
    port: int
    ca_pem: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem)
        return context

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(), timeout=30
        )
        # SNI and certificate check for the site's name, not for 127.0.0.1.
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        conn.sock = self.context().wrap_socket(sock, server_hostname=self.domain)
        conn.request("GET", path, headers={"Host": self.domain, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        result = response.status, {k.lower(): v for k, v in response.getheaders()}, body
        conn.close()
        return result

    def websocket(self, path: str):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return connect(
            f"wss://{self.domain}{path}",
            sock=sock,
            ssl=self.context(),
            server_hostname=self.domain,
            origin=f"https://{self.domain}",
            open_timeout=30,
        )


def frames(ws, count: int, timeout: float = 30) -> list:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]
