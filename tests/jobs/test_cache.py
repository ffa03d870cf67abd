import pytest
import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.management import CommandError

from tests.helpers import call, documented, run_json


def test_cache_flush_clears_the_cache():
    cache.set("greeting", "hello")
    assert call("cache", "flush").strip() == "✔ Cache flushed"
    assert cache.get("greeting") is None


@pytest.mark.redis
def test_on_redis_only_the_caches_keys_go():
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        cache.set("greeting", "hello")
        cache.set("other", "x", version=7)
        client.set("stagehand:group:room-1", "channel layer state")
        client.set("unrelated", "broker or anything else")
        call("cache", "flush")
        assert cache.get("greeting") is None and cache.get("other", version=7) is None
        assert client.get("stagehand:group:room-1") == b"channel layer state"
        assert client.get("unrelated") == b"broker or anything else"
    finally:
        client.delete("stagehand:group:room-1", "unrelated")
        client.close()


def test_an_unreachable_redis_is_an_error_that_says_what_to_do(settings):
    # A closed port: the cache's Redis is down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with pytest.raises(CommandError, match="The cache's Redis does not answer") as err:
        call("cache", "flush")
    assert "check REDIS_URL with `info`, start Redis" in str(err.value)


def test_cache_flush_json_where_the_cache_cannot_count(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    documented("docs/jobs.md", "cache flush [-v 2] [--json]")
    cache.set("greeting", "hello")
    data, err = run_json("cache", "flush", "--json")
    assert (data, err) == ({"flushed": True, "deleted": None}, "")
    assert cache.get("greeting") is None


@pytest.mark.redis
def test_cache_flush_json_on_redis_counts_the_keys():
    assert isinstance(caches["default"], RedisCache)
    cache.set("greeting", "hello")
    cache.set("other", "x", version=7)
    data, err = run_json("cache", "flush", "-v", "2", "--json")
    assert (data, err) == ({"flushed": True, "deleted": 2}, "")
    data, _ = run_json("cache", "flush", "--json")
    assert data == {"flushed": True, "deleted": 0}
