"""What goes wrong with backups, as exceptions whose message says what to do next."""

from __future__ import annotations


class BackupError(Exception):
    """A backup, restore or prune failed; the message says what to do next."""


class BackupNotFound(BackupError):
    """There is no backup of that name (or none at all for ``latest``)."""


class StorageUnavailable(BackupError):
    """The backup storage could not be reached or refused a request."""


def describe(exc: BaseException) -> str:
    """Return ``Type: message`` (or just the type) for an error in a message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BackupDamaged(BackupError):
    """The backup itself does not restore: wrong checksum, unreadable by the engine.

    Raised once its bytes have been read; a rehearsal records it as the outcome.
    """
