import sys
import uuid

import pytest
from django.views.debug import ExceptionReporter

from apps.core.secrets import MASK, mask_setting, mask_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:pw@redis:6379/0", "redis://user:***@redis:6379/0"),
        ("redis://redis:6379/0?password=pw", "redis://redis:6379/0?password=***"),
        (
            "redis://redis:6379/0?db=1&password=pw&token=t",
            "redis://redis:6379/0?db=1&password=***&token=***",
        ),
        ("amqp://guest:guest@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("s3://bucket/backup/", "s3://bucket/backup/"),
        ("/var/lib/stagehand", "/var/lib/stagehand"),
        # An absolute SQLite path keeps its four slashes (not a host called var).
        ("sqlite:////var/db.sqlite3", "sqlite:////var/db.sqlite3"),
    ],
)
def test_mask_url_hides_userinfo_and_secret_query_parameters(url, expected):
    assert mask_url(url) == expected


def test_mask_url_masks_a_url_it_cannot_parse():
    assert mask_url("http://[::1:pw@host/") == MASK


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DJANGO_SECRET_KEY", "s3cr3t", MASK),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t", MASK),
        ("POSTGRES_PASSWORD", "pw", MASK),
        ("DJANGO_SECRET_KEY", "", ""),
        ("REDIS_URL", "redis://:pw@h/0", "redis://:***@h/0"),
        ("DJANGO_ALLOWED_HOSTS", "example.org", "example.org"),
        ("AWS_ACCESS_KEY_ID", "AKIA", "AKIA"),
    ],
)
def test_mask_setting(name, value, expected):
    assert mask_setting(name, value) == expected


def use_redis_with_a_password(settings) -> None:
    url = f"redis://127.0.0.1:6379/4?password={uuid.uuid4().hex}"
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url}]},
        }
    }


def test_error_reports_mask_urls_in_settings(settings, rf):
    """Django's error page and report (DEBUG, or mailed to ADMINS) list the settings:
    a REDIS_URL with ?password= is masked there too."""
    # Set elsewhere: the page also lists this frame's variables, and only the
    # settings are under test.
    use_redis_with_a_password(settings)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(rf.get("/"), *sys.exc_info())
        text = reporter.get_traceback_text() + reporter.get_traceback_html()
    password = settings.REDIS_URL.rsplit("=", 1)[1]
    assert password not in text
    assert "password=***" in text
