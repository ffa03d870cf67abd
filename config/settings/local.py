"""Settings for a developer's laptop: debug on, a fixed harmless secret key."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env(
    "DJANGO_SECRET_KEY",
    default="local-only-insecure-key-never-use-in-production-0123456789",
)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]
)
STAGEHAND_ENVIRONMENT = env("STAGEHAND_ENVIRONMENT", default="local")
