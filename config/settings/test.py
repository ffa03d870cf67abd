"""Settings for the test suite: the embedded defaults unless DATABASE_URL/REDIS_URL say otherwise."""

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="test-only-insecure-key-0123456789abcdef")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
STAGEHAND_ENVIRONMENT = env("STAGEHAND_ENVIRONMENT", default="test")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"]["level"] = env("DJANGO_LOG_LEVEL", default="WARNING")  # noqa: F405
# No collectstatic before the tests: WhiteNoise looks static files up per request
# instead of indexing a STATIC_ROOT that does not exist (and warning about it).
WHITENOISE_AUTOREFRESH = True
# The suite makes hundreds of API changes a minute as one user; the throttle's own
# test (tests/core/test_api_throttle.py) sets a low rate.
REST_FRAMEWORK = {  # noqa: F405
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"mutations": "100000/minute"},
}
