"""One log format for every process: Django, uvicorn and Celery (docs/operations.md).

The settings build ``LOGGING`` with ``logging_config``; uvicorn's loggers are named in
it, so Django's configuration (applied when the ASGI application loads) replaces
uvicorn's own handlers, and Celery is told to keep it (config/celery_app.py).
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT_FORMAT = (
    "%(asctime)s.%(msecs)03d %(levelname)s [%(process)d] %(name)s: %(message)s"
)
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# python-json-logger reads the field names from this; every record carries them.
JSON_FIELDS = "%(levelname)s %(process)d %(name)s %(message)s"


def logging_config(log_format: str, level: str) -> dict:
    """Return Django's LOGGING for ``log_format`` (text or json) at root ``level``.

    Another format logs as text; the system check ``log_format_check`` refuses it.
    """
    if log_format not in FORMATS:
        log_format = "text"
    # Loggers that bring handlers of their own are sent to the root's one handler;
    # their levels (uvicorn's --log-level) are left as they are.
    to_root = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"format": TEXT_FORMAT, "datefmt": DATE_FORMAT},
            "json": {"()": "apps.core.logs.json_formatter"},
        },
        "filters": {
            "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format},
            # Django's own: errors mailed to ADMINS when DEBUG is off.
            "mail_admins": {
                "level": "ERROR",
                "filters": ["require_debug_false"],
                "class": "django.utils.log.AdminEmailHandler",
            },
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "django": {"handlers": ["mail_admins"], "propagate": True},
            "django.server": to_root,
            "uvicorn": to_root,
            "uvicorn.error": to_root,
            "uvicorn.access": to_root,
        },
    }


def json_formatter() -> logging.Formatter:
    """One JSON object per record: timestamp, level, process, logger, message (and
    exc_info with the traceback), by python-json-logger."""
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def output_record(text: str, source: str, pid: int) -> logging.LogRecord:
    """A line a process wrote outside logging (a banner, a crash's traceback) as a
    record of the logger ``<source>.output``, to be formatted like the others."""
    record = logging.makeLogRecord(
        {"name": f"{source}.output", "msg": text, "levelno": logging.INFO}
    )
    record.levelname = "INFO"
    record.process = pid
    return record
