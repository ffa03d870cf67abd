"""Middleware of Stagehand's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase

_END = object()


async def _in_a_thread(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield ``iterator``'s parts, each read in a worker thread."""
    while True:
        part = await sync_to_async(next, thread_sensitive=False)(iterator, _END)
        if part is _END:
            return
        yield part


def async_file_responses(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Under ASGI, hand file responses (WhiteNoise's static files) over asynchronously.

    Django's ASGI handler cannot stream a synchronous iterator: it warns on every
    such response and reads the whole file into memory first. This reads it chunk by
    chunk in a worker thread instead, as Django's own ASGIStaticFilesHandler does
    for a whole file. Under WSGI the response is left as it is.
    """

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        if (
            isinstance(request, ASGIRequest)
            and response.streaming
            and not response.is_async
        ):
            response.streaming_content = _in_a_thread(iter(response.streaming_content))
        return response

    return middleware
