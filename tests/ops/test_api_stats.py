def test_stats_endpoint_returns_every_component(api, var_dir):
    response = api.get("/api/v1/stats/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    names = [c["name"] for c in body["components"]]
    assert names[:4] == ["processes", "workers", "queues", "beat"]
    database = next(c for c in body["components"] if c["name"] == "database")
    assert database["status"] == "ok" and database["figures"]["engine"]


def test_stats_endpoint_says_unavailable_when_the_cache_is_down(api, settings, var_dir):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    body = api.get("/api/v1/stats/").json()
    assert body["status"] == "unavailable"
    cache = next(c for c in body["components"] if c["name"] == "cache")
    assert cache["status"] == "unavailable" and cache["ok"] is False
