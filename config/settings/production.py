"""Production settings: every secret from the environment, HTTPS everywhere."""

from .base import *  # noqa: F403
from .base import DATABASES, STORAGES, email_settings, env

SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
STAGEHAND_ENVIRONMENT = env("STAGEHAND_ENVIRONMENT", default="production")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)

# SECURITY
# ------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True
)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The container's own healthcheck and the proxy's probes ask over plain HTTP from
# inside; a redirect to https:// would fail them. The paths are anchored.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# MAIL
# ------------------------------------------------------------------------------
# Production mail goes to a real server, never to the console where it would be lost
# without a word: without EMAIL_URL, Django's own default, SMTP on localhost:25.
globals().update(email_settings(env, default="smtp://localhost:25"))  # EMAIL_BACKEND, …

# STATIC
# ------------------------------------------------------------------------------
# collectstatic runs when the image is built; WhiteNoise (see MIDDLEWARE) serves the
# files with hashed names and far-future cache headers, compressed.
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default="/app/staticfiles")
WHITENOISE_USE_FINDERS = False
STORAGES = {
    **STORAGES,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
