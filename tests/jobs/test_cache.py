import pytest
from django.conf import settings
from django.core.cache import cache

from tests.helpers import call


def test_cache_flush_clears_the_cache():
    cache.set("greeting", "hello")
    assert call("cache", "flush").strip() == "✔ Cache flushed"
    assert cache.get("greeting") is None


@pytest.mark.redis
def test_on_redis_only_the_caches_keys_go():
    import redis

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
