import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError

from tests.helpers import call


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
