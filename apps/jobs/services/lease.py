"""The beat lease: the one row a beat process must hold to send scheduled jobs
(used by ``apps.jobs.beat``'s scheduler and shown by ``stats``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import BeatLock

BEAT_LOCK = "beat"


def hold_beat_lock(holder: str, ttl: float) -> bool:
    """Claim or renew the beat lease for ``holder``; return whether it holds it.

    One conditional UPDATE: it succeeds only when the lock is free, expired or already
    ours, so two beats can never both hold it.
    """
    now = timezone.now()
    BeatLock.objects.get_or_create(name=BEAT_LOCK)
    lease = now + timedelta(seconds=ttl)
    mine = BeatLock.objects.filter(name=BEAT_LOCK, holder=holder).update(
        expires_at=lease
    )
    if mine:
        return True
    return bool(
        BeatLock.objects.filter(name=BEAT_LOCK)
        .filter(Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=lease, acquired_at=now)
    )


def release_beat_lock(holder: str) -> bool:
    """Give the beat lease up if ``holder`` has it, so a standby beat takes over."""
    return bool(
        BeatLock.objects.filter(name=BEAT_LOCK, holder=holder).update(
            holder="", expires_at=None
        )
    )


def beat_lock_holder() -> dict[str, Any] | None:
    """Return who holds the beat lease and until when, or None when nobody does."""
    lock = BeatLock.objects.filter(name=BEAT_LOCK).first()
    if lock is None or not lock.holder or not lock.expires_at:
        return None
    if lock.expires_at < timezone.now():
        return None
    return {"holder": lock.holder, "expires_at": lock.expires_at}


def beat_last_tick() -> datetime | None:
    """Return when a beat last renewed its lease (its last tick), expired or not;
    None when no beat holds it or one gave it up."""
    lock = BeatLock.objects.filter(name=BEAT_LOCK).first()
    if lock is None or lock.expires_at is None:
        return None
    return lock.expires_at - timedelta(seconds=float(settings.BEAT_LOCK_TTL))
