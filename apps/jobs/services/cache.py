"""Flushing the cache without touching what shares its Redis database."""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from apps.core.output import counted

from .errors import JobError


def flush_cache(alias: str = "default") -> int | None:
    """Clear the cache; return how many keys went, or None when the backend can't say.

    On Redis only the cache's own keys go (``<KEY_PREFIX>:<version>:…``): the
    channel layer and a broker may share the database and must not be wiped.
    """
    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        cache.clear()
        return None
    # redis-py only for a Redis cache: ~40 ms of every command's start-up otherwise
    # (bench/startup.py); Django's RedisCache imports it on first use too.
    from redis.exceptions import RedisError  # noqa: PLC0415

    client = cache._cache.get_client(write=True)
    prefix = cache.key_prefix
    pattern = f"{prefix}:[0-9]*:*" if prefix else "[0-9]*:*"
    deleted = 0
    batch: list[bytes] = []
    try:
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    except RedisError as exc:
        raise JobError(
            f"The cache's Redis does not answer ({type(exc).__name__}: {exc}); "
            + (f"{counted(deleted, 'key')} went before it stopped; " if deleted else "")
            + "check REDIS_URL with `info`, start Redis, and run `cache flush` again."
        ) from exc
    return deleted
