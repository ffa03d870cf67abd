"""ASGI entry point: HTTP through Django, WebSocket through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.connections.routing import websocket_urlpatterns  # noqa: E402
from apps.connections.security import WorldOriginValidator  # noqa: E402
from apps.ops.metrics import CountingMiddleware  # noqa: E402

# Counts this process's HTTP requests and WebSockets for /metrics.
application = CountingMiddleware(
    ProtocolTypeRouter(
        {
            # Static files are WhiteNoise's, in the middleware (config/settings/base.py).
            "http": django_asgi_app,
            # Browsers may open a world's socket only from an allowed host or its domain.
            "websocket": WorldOriginValidator(URLRouter(websocket_urlpatterns)),
        }
    )
)
