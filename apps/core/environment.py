"""The environment the settings read, recorded as they read it.

The settings read every variable through :class:`RecordingEnv`, a
``environ.FileAwareEnv`` that remembers each read: the variable's name, where its
value came from (the environment, the file that ``<NAME>_FILE`` names, or the
default) and the value. ``manage.py config`` lists exactly those variables, and the
deploy checks look at their values, so neither keeps a list of its own that could
drift from what the settings really read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import ParseResult, quote

import environ
from django.core.exceptions import ImproperlyConfigured

from .secrets import mask_setting

ENVIRONMENT = "environment"
FILE = "file"
DEFAULT = "default"


@dataclass(frozen=True)
class Variable:
    """One environment variable as the settings last read it."""

    name: str
    source: str  # ENVIRONMENT, FILE or DEFAULT
    value: Any  # what the read returned (a URL stays the URL text, not its dict)
    default: Any  # environ.Env.NOTSET when the variable is required
    file: str | None = None  # the path <NAME>_FILE named, when source is FILE

    @property
    def required(self) -> bool:
        return self.default is environ.Env.NOTSET


# Name -> last read, in the order of each name's first read: production.py reads
# DJANGO_SECRET_KEY again after base.py, and the later read is the one in force.
_READ: dict[str, Variable] = {}


def variables_read() -> list[Variable]:
    """Return every variable the settings have read, in the order they first read it."""
    return list(_READ.values())


class RecordingEnv(environ.FileAwareEnv):
    """``FileAwareEnv`` that records each variable it reads (see the module docstring).

    Every typed reader (``env.bool``, ``env.db``, ``env.email_url`` …) goes through
    ``get_value``, so recording there sees them all.
    """

    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, **kw: Any
    ) -> Any:
        name = f"{self.prefix}{var}"
        path = os.environ.get(f"{name}_FILE")
        if path:
            source = FILE
        elif name in os.environ:
            source = ENVIRONMENT
        else:
            source = DEFAULT
        value = super().get_value(var, cast=cast, default=default, **kw)
        # env.email_url() reads with cast=urlparse: record the URL's text.
        shown = value.geturl() if isinstance(value, ParseResult) else value
        # Assigning to a known name keeps its place: first-read order, last value.
        _READ[name] = Variable(
            name=name,
            source=source,
            value=shown,
            default=default,
            file=path if source == FILE else None,
        )
        return value


def _shown(name: str, value: Any, show_secrets: bool) -> Any:
    if value is environ.Env.NOTSET:
        return None
    return value if show_secrets else mask_setting(name, value)


def configuration(*, show_secrets: bool = False) -> list[dict[str, Any]]:
    """Return each variable the settings read: name, value, source, file, default.

    Values and defaults are masked (apps.core.secrets) unless ``show_secrets``.
    """
    return [
        {
            "name": v.name,
            "value": _shown(v.name, v.value, show_secrets),
            "source": v.source,
            "file": v.file,
            "default": _shown(v.name, v.default, show_secrets),
            "required": v.required,
        }
        for v in variables_read()
    ]


def email_settings(env: environ.Env, *, default: str) -> dict[str, Any]:
    """Django's ``EMAIL_*`` settings from ``EMAIL_URL`` (or ``default``).

    A template's ``<placeholder>`` left in ``EMAIL_URL`` is read as ``default``, so
    that every command still starts and ``check --deploy`` can name the variable.
    """
    url = env.str("EMAIL_URL", default=default)
    if url.startswith("<"):
        url = default
    try:
        parsed = environ.Env.email_url_config(url)
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            f"EMAIL_URL is not a mail URL ({exc}); use smtp://, smtp+tls://, "
            "smtp+ssl:// or consolemail:// (docs/configuration.md)."
        ) from exc
    return {
        "EMAIL_BACKEND": parsed["EMAIL_BACKEND"],
        "EMAIL_HOST": parsed["EMAIL_HOST"] or "localhost",
        "EMAIL_PORT": parsed["EMAIL_PORT"] or 25,
        "EMAIL_HOST_USER": parsed["EMAIL_HOST_USER"] or "",
        "EMAIL_HOST_PASSWORD": parsed["EMAIL_HOST_PASSWORD"] or "",
        "EMAIL_USE_TLS": bool(parsed.get("EMAIL_USE_TLS", False)),
        "EMAIL_USE_SSL": bool(parsed.get("EMAIL_USE_SSL", False)),
    }


def postgres_url(env: environ.Env) -> str:
    """The database URL that POSTGRES_HOST, _PORT, _USER, _PASSWORD and _DB make.

    The compose files set those (the postgres image reads the same file); every
    process of the django image builds its URL here, the entrypoint's wait included,
    and ``docker compose exec`` (which bypasses the entrypoint) too. Empty when
    POSTGRES_HOST is not set. Each part is quoted: a password may hold any character.
    """
    host = env.str("POSTGRES_HOST", default="")
    user = quote(env.str("POSTGRES_USER", default="postgres"), safe="")
    password = quote(env.str("POSTGRES_PASSWORD", default=""), safe="")
    port = env.str("POSTGRES_PORT", default="5432")
    name = quote(env.str("POSTGRES_DB", default="postgres"), safe="")
    return f"postgres://{user}:{password}@{host}:{port}/{name}" if host else ""


S3_ENCRYPTIONS = ("AES256", "aws:kms")


def s3_encryption_parameters(sse: str, kms_key_id: str = "") -> dict[str, str]:
    """Return django-storages' object parameters for AWS_S3_SSE (and its KMS key)."""
    if not sse:
        if kms_key_id:
            raise ImproperlyConfigured(
                "AWS_S3_SSE_KMS_KEY_ID is set but AWS_S3_SSE is not; set "
                "AWS_S3_SSE=aws:kms to encrypt with that key."
            )
        return {}
    if sse not in S3_ENCRYPTIONS:
        raise ImproperlyConfigured(
            f"AWS_S3_SSE must be AES256 or aws:kms, not {sse!r}."
        )
    parameters = {"ServerSideEncryption": sse}
    if kms_key_id:
        if sse != "aws:kms":
            raise ImproperlyConfigured(
                "AWS_S3_SSE_KMS_KEY_ID needs AWS_S3_SSE=aws:kms (AES256 uses keys "
                "held by S3)."
            )
        parameters["SSEKMSKeyId"] = kms_key_id
    return parameters
