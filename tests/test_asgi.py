"""The ASGI application as the server runs it: the admin's static files are served."""

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from config.asgi import application


async def _get(path: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        # As every HTTP/1.1 client sends; Django answers 400 to a request without.
        "headers": [(b"host", b"localhost")],
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input(
        {"type": "http.request", "body": b"", "more_body": False}
    )
    start = await communicator.receive_output(5)
    body = b""
    while True:
        message = await communicator.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], body


def get(path: str) -> tuple[int, bytes]:
    return async_to_sync(_get)(path)


def test_admin_static_files_are_served_by_the_asgi_app():
    status, body = get("/static/admin/css/base.css")
    assert status == 200
    assert b"font-family" in body


def test_an_unknown_static_file_is_a_404():
    status, _ = get("/static/admin/css/nope.css")
    assert status == 404
