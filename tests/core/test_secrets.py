import pytest

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
