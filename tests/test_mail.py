"""Mail from EMAIL_URL and DJANGO_DEFAULT_FROM_EMAIL: `sendtestemail` reaches a real SMTP server."""

from __future__ import annotations

import socket
import subprocess
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import manage

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "x9!Fq2@Lr7#Vm4$Tz8%Wb1^Hc6&Jn3*Pd5(Ks0)Yg-e_u+i=o~a;s:d,f.g/h",
    "DJANGO_ALLOWED_HOSTS": "stagehand.example.com",
    "DJANGO_ADMIN_URL": "ops-3f9a/",
    "DATABASE_URL": "sqlite:///:memory:",
}


class Sink:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content),
            )
        )
        return "250 Message accepted for delivery"


class SinkController(Controller):
    """An SMTP server on a socket bound to 127.0.0.1:0 here: no port race."""

    def __init__(self, handler: Sink) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self.sock.getsockname()[1])

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self.sock)


@pytest.fixture
def smtp_sink():
    sink = Sink()
    controller = SinkController(sink)
    controller.start()
    yield controller.port, sink
    controller.stop()


def sendtestemail(env: dict, *recipients: str) -> subprocess.CompletedProcess:
    return manage(env, "sendtestemail", *recipients, timeout=60)


def test_sendtestemail_delivers_over_smtp_from_the_configured_address(
    smtp_sink, base_env, tmp_path
):
    port, sink = smtp_sink
    env = {
        **base_env,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "STAGEHAND_VAR_DIR": str(tmp_path),
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "DJANGO_DEFAULT_FROM_EMAIL": "Stagehand <ops@stagehand.example.com>",
    }
    result = sendtestemail(env, "alice@example.org")
    assert result.returncode == 0, result.stderr
    assert len(sink.messages) == 1
    mail_from, recipients, message = sink.messages[0]
    assert mail_from == "ops@stagehand.example.com"
    assert recipients == ["alice@example.org"]
    assert message["From"] == "Stagehand <ops@stagehand.example.com>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"].startswith("Test email from")


def test_local_mail_goes_to_the_console_by_default(base_env, tmp_path):
    env = {k: v for k, v in base_env.items() if k not in {"EMAIL_URL", "DATABASE_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        STAGEHAND_VAR_DIR=str(tmp_path),
        DATABASE_URL="sqlite:///:memory:",
    )
    result = sendtestemail(env, "alice@example.org")
    assert result.returncode == 0, result.stderr
    assert "From: Stagehand <stagehand@localhost>" in result.stdout
    assert "To: alice@example.org" in result.stdout
