"""Settings shared by every environment.

Every value comes from the environment through django-environ; secrets can also be
read from ``<NAME>_FILE``. With nothing set, Stagehand runs on embedded defaults that
need no server: SQLite, local folders, local-memory cache, in-memory channel layer and
no broker. Each variable is documented in docs/configuration.md.
"""

from pathlib import Path

from apps.core.environment import (
    RecordingEnv,
    email_settings,
    postgres_url,
    s3_encryption_parameters,
)
from apps.core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent
APPS_DIR = BASE_DIR / "apps"

# FileAwareEnv reads NAME from the environment, or the contents of the file that
# NAME_FILE points at (docker secrets, Kubernetes secret volumes); RecordingEnv also
# remembers each read, for `manage.py config` and the deploy checks.
env = RecordingEnv()

VAR_DIR = Path(env("STAGEHAND_VAR_DIR", default=str(BASE_DIR / "var")))

# Deploy label: <commit>.<environment>, used to tell connections of different builds apart.
STAGEHAND_COMMIT = env("STAGEHAND_COMMIT", default="unknown")
STAGEHAND_ENVIRONMENT = env("STAGEHAND_ENVIRONMENT", default="unknown")

# GENERAL
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
TIME_ZONE = env("STAGEHAND_TIME_ZONE", default="UTC")
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True
SITE_ID = 1

# DATABASES
# ------------------------------------------------------------------------------
DATABASES = {
    # DATABASE_URL, else the compose files' POSTGRES_* (postgres_url), else SQLite.
    "default": env.db(
        "DATABASE_URL",
        default=postgres_url(env) or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
    ),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Several processes (server, worker, commands) share the file: wait for locks.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# URLS
# ------------------------------------------------------------------------------
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
ADMIN_URL = env("DJANGO_ADMIN_URL", default="admin/")

# APPS
# ------------------------------------------------------------------------------
DJANGO_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Django's admin on Stagehand's site: the operations page is in its app list.
    "apps.ops.apps.AdminConfig",
]
THIRD_PARTY_APPS = [
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and Redoc served from our own static files, not a CDN.
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # shell_plus: a shell with every model and each app's services imported.
    "django_extensions",
]
LOCAL_APPS = [
    "apps.core",
    "apps.accounts",
    "apps.worlds",
    "apps.connections",
    "apps.jobs",
    "apps.backups",
    "apps.search",
    "apps.ops",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS
# shell_plus imports every model (as Django's own shell does) and, under its app's
# name, each app's services: worlds.create_world(...), backups.list_backups().
SHELL_PLUS_IMPORTS = [
    f"from apps.{app} import services as {app}"
    for app in ("accounts", "worlds", "connections", "jobs", "backups", "search", "ops")
]

# AUTHENTICATION
# ------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# MIDDLEWARE
# ------------------------------------------------------------------------------
MIDDLEWARE = [
    # Outermost: streams WhiteNoise's file responses to the ASGI server asynchronously.
    "apps.core.middleware.async_file_responses",
    "django.middleware.security.SecurityMiddleware",
    # Static files straight after the security headers, before sessions and the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# STATIC AND MEDIA
# ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = str(VAR_DIR / "static")
MEDIA_URL = "/media/"
MEDIA_ROOT = str(VAR_DIR / "media")
BACKUP_ROOT = str(VAR_DIR / "backups")
# WhiteNoise (MIDDLEWARE) serves the admin's CSS and JS straight from the installed
# apps when STATIC_ROOT lacks them: no collectstatic and no separate web server on a
# laptop. Production serves only what the image's build collected (production.py).
WHITENOISE_USE_FINDERS = True

AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID", default=None)
    AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY", default=None)
    AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL", default=None)
    AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME", default=None)
    AWS_S3_CUSTOM_DOMAIN = env("AWS_S3_CUSTOM_DOMAIN", default=None)
    AWS_QUERYSTRING_AUTH = env.bool("AWS_QUERYSTRING_AUTH", default=True)
    AWS_DEFAULT_ACL = None
    AWS_S3_FILE_OVERWRITE = False
    # Encryption at rest (backups hold attendees' personal data): AES256 (keys held
    # by S3) or aws:kms (with AWS_S3_SSE_KMS_KEY_ID, or the bucket's default KMS key).
    AWS_S3_SSE = env("AWS_S3_SSE", default="")
    AWS_S3_SSE_KMS_KEY_ID = env("AWS_S3_SSE_KMS_KEY_ID", default="")
    _sse = s3_encryption_parameters(AWS_S3_SSE, AWS_S3_SSE_KMS_KEY_ID)
    _s3 = "storages.backends.s3.S3Storage"
    STORAGES = {
        "default": {
            "BACKEND": _s3,
            "OPTIONS": {"location": "media", "object_parameters": _sse},
        },
        # Backups live under backup/ in the same bucket (see apps.backups).
        "backups": {
            "BACKEND": _s3,
            "OPTIONS": {
                "location": "",
                "file_overwrite": True,
                "object_parameters": _sse,
            },
        },
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": BACKUP_ROOT},
        },
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }

# MAIL
# ------------------------------------------------------------------------------
# EMAIL_URL: smtp://user:password@host:25, smtp+tls://…:587 (STARTTLS),
# smtp+ssl://…:465 (TLS from the start), or consolemail:// to print mail on the
# console, the embedded default.
globals().update(email_settings(env, default="consolemail://"))  # EMAIL_BACKEND, …
# A mail server that stops answering must not hold a request or a job forever.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env(
    "DJANGO_DEFAULT_FROM_EMAIL", default="Stagehand <stagehand@localhost>"
)
# Error reports to ADMINS come from the same address.
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# TEMPLATES
# ------------------------------------------------------------------------------
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(BASE_DIR / "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# CACHE
# ------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "stagehand",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# CHANNELS
# ------------------------------------------------------------------------------


def redis_channel_layers(url: str) -> dict:
    """Return CHANNEL_LAYERS for the Redis channel layer at ``url``."""
    return {
        "default": {
            # channels-redis' layer, whose receive rides out a Redis outage instead
            # of ending every consumer (apps/connections/layer.py).
            "BACKEND": "apps.connections.layer.RedisChannelLayer",
            "CONFIG": {
                # No socket timeout, as before redis-py 8 (whose default is 5 s):
                # - channels-redis' receive blocks 5 s in BZPOPMIN, and a read cut
                #   at 5 s crashes the consumer, whose socket then closes without
                #   a close frame (channels_redis issue #422);
                # - with a timeout, redis-py wraps each send in asyncio.wait_for,
                #   which on Python 3.11 can swallow a cancellation: a consumer's
                #   (or hub's) receive then never stops polling.
                "hosts": [{"address": url, "socket_timeout": None}],
                "prefix": "stagehand",
                # Every consumer of a server process shares that process's inbox;
                # messages to single consumers (`connections drop --interval`,
                # connection_limit replacements) queue there, and a busy process
                # may fall behind on thousands without refusing them.
                "channel_capacity": {"specific.*": 20000},
            },
        }
    }


if REDIS_URL:
    CHANNEL_LAYERS = redis_channel_layers(REDIS_URL)
else:
    # One process only: connections commands say they need REDIS_URL.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# CONNECTIONS
# ------------------------------------------------------------------------------
# A live connection counts for its label while its last heartbeat is within the
# window; the server writes a heartbeat at most every REFRESH seconds (clients ping
# every 10 s), so the window must exceed REFRESH plus the client's ping interval.
CONNECTIONS_HEARTBEAT_WINDOW = env.float("CONNECTIONS_HEARTBEAT_WINDOW", default=60.0)
CONNECTIONS_HEARTBEAT_REFRESH = env.float("CONNECTIONS_HEARTBEAT_REFRESH", default=20.0)
# force_reload: seconds between ["connection.reload", {}] and closing the socket.
CONNECTIONS_RELOAD_GRACE = env.float("CONNECTIONS_RELOAD_GRACE", default=2.0)
# Largest WebSocket frame the consumer accepts, in bytes.
CONNECTIONS_MAX_FRAME_BYTES = env.int("CONNECTIONS_MAX_FRAME_BYTES", default=65536)
# A server process keeps each world, its rooms and the current terms in memory; it
# checks at most every CHECK seconds whether one changed, and reads each again at
# least every MAX_AGE seconds (apps/connections/snapshots.py).
CONNECTIONS_SNAPSHOT_CHECK = env.float("CONNECTIONS_SNAPSHOT_CHECK", default=1.0)
CONNECTIONS_SNAPSHOT_MAX_AGE = env.float("CONNECTIONS_SNAPSHOT_MAX_AGE", default=60.0)
# Dropped and reloaded clients are told to come back spread over count / RATE
# seconds (connections drop --spread overrides it).
CONNECTIONS_RECONNECT_RATE = env.float("CONNECTIONS_RECONNECT_RATE", default=1000.0)
# A server process with this many handshakes not yet authenticated answers new ones
# with close code 1013 and a reconnect_after_ms hint (0: never).
CONNECTIONS_MAX_PENDING = env.int("CONNECTIONS_MAX_PENDING", default=2000)
# A socket that has not sent a valid token this many seconds after opening is told
# auth.timeout and closed with 4008, freeing its pending slot (0: never).
CONNECTIONS_AUTH_TIMEOUT = env.float("CONNECTIONS_AUTH_TIMEOUT", default=10.0)

# CELERY
# ------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
# Without a broker, jobs run in-process; `jobs run -d` says a broker is needed.
STAGEHAND_HAS_BROKER = bool(CELERY_BROKER_URL)
if not STAGEHAND_HAS_BROKER:
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TIMEZONE = TIME_ZONE
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=6 * 60 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-beat's DatabaseScheduler behind a database lease: a second beat
# stands by instead of sending every job twice (docs/jobs.md).
CELERY_BEAT_SCHEDULER = "apps.jobs.beat:LockedDatabaseScheduler"
BEAT_LOCK_TTL = env.int("BEAT_LOCK_TTL", default=60)
# Seconds between heartbeats of a running job; 3 missed ones mark it lost.
JOB_HEARTBEAT = env.float("JOB_HEARTBEAT", default=10)

# BACKUPS
# ------------------------------------------------------------------------------
BACKUP_SCHEDULE = env("BACKUP_SCHEDULE", default="@daily")
BACKUP_KEEP = env.int("BACKUP_KEEP", default=0)
# `migrate_safely` (the container's start): back up before pending migrations when
# backups go to S3 (auto), whatever the storage (always), or not at all (never).
MIGRATE_BACKUP = env("MIGRATE_BACKUP", default="auto")
# pg_dump gives up after this many seconds waiting for a table lock (a migration
# holding one) instead of queueing every later query behind itself; 0 waits forever.
BACKUP_LOCK_WAIT_TIMEOUT = env.int("BACKUP_LOCK_WAIT_TIMEOUT", default=60)
# Bounds on every S3 call of the backups (botocore's defaults, 60 s each, retried five
# times, would hold a command for minutes against a server that never answers).
BACKUP_S3_CONNECT_TIMEOUT = env.float("BACKUP_S3_CONNECT_TIMEOUT", default=5)
BACKUP_S3_READ_TIMEOUT = env.float("BACKUP_S3_READ_TIMEOUT", default=30)
BACKUP_S3_ATTEMPTS = env.int("BACKUP_S3_ATTEMPTS", default=3)
# After each scheduled backup, the verify-backup job restores the newest backup into
# a scratch database and checks it (`restore --verify`); false turns that off.
BACKUP_VERIFY = env.bool("BACKUP_VERIFY", default=True)
# Parallel jobs of restores and verifications (connections loading the tables' data,
# then pg_restore --jobs building the indexes); 0: the number of cores. More than
# one job restores from a local copy of the dump spooled to BACKUP_SPOOL_DIR (default:
# the system's temporary folder), which needs the dump's size free.
BACKUP_RESTORE_JOBS = env.int("BACKUP_RESTORE_JOBS", default=0)
BACKUP_SPOOL_DIR = env("BACKUP_SPOOL_DIR", default="")
# maintenance_work_mem of pg_restore's sessions (each job's), for the index builds
# after the data ("Populating a Database" in PostgreSQL's docs); empty: the server's.
# A build takes only what its sort needs, up to this: with N jobs, up to N times it.
BACKUP_RESTORE_MAINTENANCE_WORK_MEM = env(
    "BACKUP_RESTORE_MAINTENANCE_WORK_MEM", default="512MB"
)

# SEARCH
# ------------------------------------------------------------------------------
# PostgreSQL indexes at most this many characters of each text of a document: a
# tsvector holds at most 1 MB, and one room over it would fail the whole reindex.
SEARCH_MAX_FIELD_CHARS = env.int("SEARCH_MAX_FIELD_CHARS", default=50_000)

# REST FRAMEWORK
# ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "apps.core.autoschema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    # Calls that change something, per user; reading is not throttled (429 beyond).
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.throttling.MutationThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "mutations": env("API_THROTTLE_MUTATIONS", default="120/minute")
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stagehand management API",
    "DESCRIPTION": (
        "The operator's API: the same services as the management commands. Staff "
        "only; authenticate with `Authorization: Token <key>` "
        "(`manage.py api_token create EMAIL`). Lists are paged with `limit` and "
        "`offset`; every error is `{error, detail, problems}`."
    ),
    "VERSION": "1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "SWAGGER_UI_DIST": "SIDECAR",
    # No online validator badge: the page talks to no other site.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# SECURITY
# ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Error pages and reports list the settings: URLs in them are masked (secrets.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "apps.core.error_reports.ExceptionReporterFilter"

# METRICS
# ------------------------------------------------------------------------------
# /metrics answers a request with "Authorization: Bearer <METRICS_TOKEN>", or a
# logged-in staff user; with no token set, only staff (docs/metrics.md).
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# LOGGING
# ------------------------------------------------------------------------------
# One format for Django, uvicorn and Celery: text, or json (one object per line).
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = logging_config(LOG_FORMAT, env("DJANGO_LOG_LEVEL", default="INFO"))

# `backend start` rotates each process's log file at this size, keeping this many.
BACKEND_LOG_MAX_BYTES = env.int("BACKEND_LOG_MAX_BYTES", default=10 * 1024 * 1024)
BACKEND_LOG_BACKUPS = env.int("BACKEND_LOG_BACKUPS", default=5)
