"""The Celery Beat scheduler: django-celery-beat's DatabaseScheduler behind a lock.

Two beat processes would send every scheduled job twice. Each beat therefore holds a
lease on one database row (``jobs.BeatLock``) before it sends anything, renewing it on
every tick; a second beat finds the lease taken and stands by, sending nothing, and
takes over within ``BEAT_LOCK_TTL`` seconds if the first one dies. Configured by
``CELERY_BEAT_SCHEDULER = "apps.jobs.beat:LockedDatabaseScheduler"``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

from . import services

logger = logging.getLogger(__name__)


class LockedDatabaseScheduler(DatabaseScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock_ttl = float(getattr(settings, "BEAT_LOCK_TTL", 60))
        self.has_lock = False
        self._warned = False
        super().__init__(*args, **kwargs)

    def holds_lock(self) -> bool:
        """Claim or renew the lease; log when this beat gains, loses or waits for it.

        A database connection that broke (a restore terminates every session, so do
        a restart and a failover) is reopened on the next try instead of failing
        every tick: beat is a long-running process outside Django's request cycle,
        which is what normally throws broken connections away.
        """
        try:
            close_old_connections()
            held = services.hold_beat_lock(self.holder, self.lock_ttl)
        except Exception:  # the database is away: send nothing until it is back
            logger.exception("Beat lock: cannot reach the database")
            held = False
        if held and not self.has_lock:
            logger.info("Beat lock acquired by %s", self.holder)
        elif not held and self.has_lock:
            logger.error("Beat lock lost by %s; standing by", self.holder)
        elif not held and not self._warned:
            try:
                holder = services.beat_lock_holder()
            except Exception:  # logged above; the next tick tries again
                holder = None
            logger.warning(
                "Another beat holds the lock (%s); standing by, sending nothing",
                holder["holder"] if holder else "?",
            )
            self._warned = True
        self.has_lock = held
        return held

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Renew well before the lease runs out.
        renew_every = self.lock_ttl / 3
        if not self.holds_lock():
            return renew_every
        return min(super().tick(*args, **kwargs), renew_every)

    def close(self) -> None:
        try:
            if self.has_lock:
                services.release_beat_lock(self.holder)
        finally:
            super().close()
