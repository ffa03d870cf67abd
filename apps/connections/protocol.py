"""The attendees' WebSocket protocol and the connections' channel-layer messages, in
one place: what the consumer, its modules, the hub and the services say to each
other and to clients (docs/connections.md, "The protocol").

Frames are JSON arrays ``[action, id, payload]``; ``frames.py`` checks what clients
send. The names below are what the server sends and closes with.
"""

from __future__ import annotations

import enum

# Close codes ---------------------------------------------------------------------

CLOSE_DROPPED = 1001  # going away: the client should reconnect (to any server)
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011  # the connection could not be opened: reconnect later
CLOSE_TRY_AGAIN_LATER = 1013  # this server is overloaded: reconnect after the hint
CLOSE_REPLACED = 4001  # connection_limit: the client should not reconnect by itself
CLOSE_UNKNOWN_WORLD = 4004
# No authenticate within CONNECTIONS_AUTH_TIMEOUT of the socket opening (as HTTP 408):
# reconnect and send authenticate at once.
CLOSE_AUTH_TIMEOUT = 4008

# Error codes the consumer itself answers with (frames.py has the protocol.* ones) --

SERVER_ERROR = "server.error"
SERVER_BUSY = "server.busy"
UNAUTHENTICATED = "protocol.unauthenticated"
AUTH_TIMEOUT = "auth.timeout"
UNKNOWN_ACTION = "protocol.unknown_action"
UNKNOWN_WORLD = "world.unknown_world"
SERVICE_UNAVAILABLE = "service.unavailable"

# The module a room needs for its chat.
CHAT_MODULE = "chat.native"

# Channel-layer message types ---------------------------------------------------
# A consumer handles ``connections.drop`` as ``connections_drop``; sent to a label's
# group they carry ``label`` and go to each process's hub instead.

DROP = "connections.drop"
RELOAD = "connections.reload"
REPLACED = "connections.replaced"
# A command asking a process's hub whether it is alive; the hub answers PONG to
# ``reply_to``.
PING = "connections.ping"
PONG = "connections.pong"
CHAT_MESSAGE = "chat.message"


class Move(enum.Enum):
    """A way of moving clients off a server: drop or reload, in every vocabulary.

    ``message`` is the channel-layer type, ``job`` the job's name, ``title`` how
    the admin names it, ``verb`` the summary's past tense, ``doing`` the progress
    bar's label and ``command`` the ``connections`` subcommand.
    """

    DROP = ("drop", DROP, "connections-drop", "Drop", "Dropped", "dropping", "drop")
    RELOAD = (
        "reload",
        RELOAD,
        "connections-reload",
        "Force reload",
        "Reloaded",
        "reloading",
        "force_reload",
    )

    def __init__(self, word, message, job, title, verb, doing, command) -> None:
        self.word = word  # "drop", "reload": what the admin's buttons post
        self.message = message
        self.job = job
        self.title = title
        self.verb = verb
        self.doing = doing
        self.command = command

    @classmethod
    def of(cls, name: str) -> Move:
        """Return the move named ``name``: its word, command, job or message type."""
        for move in cls:
            if name in (move.word, move.command, move.job, move.message):
                return move
        raise ValueError(f"No move {name!r}; drop or reload.")
