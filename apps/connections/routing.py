"""WebSocket routes, mounted by config.asgi behind the origin check."""

from django.urls import path

from .consumers import WorldConsumer

websocket_urlpatterns: list = [
    path("ws/world/<str:world_id>/", WorldConsumer.as_asgi()),
]
