"""``authenticate`` and ``auth.accept_terms``: who the attendee is, and the terms it
still has to accept.

The token is verified on the event loop against the world's snapshot (its secrets);
the only database call is the attendee's one indexed lookup (and its INSERT when
new), which also says which current terms it has accepted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from apps.accounts.services import TermsError, accept_terms_for
from apps.worlds.services import (
    Attendee,
    TokenError,
    find_or_create_attendees,
    verify_token,
)

from .. import outage
from ..batching import PerLoop
from ..frames import FrameError
from ..snapshots import snapshots

if TYPE_CHECKING:
    from ..consumers import WorldConsumer


@database_sync_to_async
def _load_attendees(calls: list[tuple]) -> list[Attendee | TokenError]:
    """Find or create the attendees of a batch of tokens, grouped by world and
    terms: one query (and one INSERT for the new ones) per group."""
    groups: dict[tuple, list[int]] = {}
    for index, (world, _, terms) in enumerate(calls):
        groups.setdefault((world.pk, tuple(terms)), []).append(index)
    results: list = [None] * len(calls)
    for (_, terms), indexes in groups.items():
        world = calls[indexes[0]][0]
        found = find_or_create_attendees(world, [calls[i][1] for i in indexes], terms)
        for index, attendee in zip(indexes, found, strict=True):
            results[index] = attendee
    return results


# Looked up through the module, so that a test can make them fail.
load_attendee = PerLoop(_load_attendees)  # (world, claims, terms ids) -> Attendee
record_acceptance = database_sync_to_async(accept_terms_for)


async def authenticate(consumer: WorldConsumer, payload: dict) -> None:
    if consumer.user_id is not None:
        raise FrameError("protocol.already_authenticated", "Already authenticated.")
    world = consumer.world.world
    try:
        claims = verify_token(world, payload.get("token"))
        terms = await snapshots().current_terms()
        attendee = await load_attendee(world, claims, terms.ids)
    except TokenError as exc:
        raise FrameError(exc.code, exc.message) from None
    # Whoever it is has shown a valid token: no longer a pending handshake, and no
    # deadline while a person reads the terms.
    consumer.identified()
    pending = [t for t in terms.required if t["id"] not in attendee.accepted]
    if pending:
        # Not authenticated until the current terms are accepted (accept_terms).
        consumer.pending_auth = attendee
        await consumer.send_frame(["auth.terms_required", {"terms": pending}])
        return
    await _authenticated(consumer, attendee)


async def accept_terms(consumer: WorldConsumer, payload: dict) -> None:
    attendee = consumer.pending_auth
    if attendee is None:
        raise FrameError(
            "auth.no_terms_pending", "There are no terms waiting to be accepted."
        )
    try:
        pending = await record_acceptance(attendee.pk, payload["terms"])
    except TermsError as exc:
        raise FrameError("auth.invalid_terms", str(exc)) from None
    if pending:
        await consumer.send_frame(["auth.terms_required", {"terms": pending}])
        return
    consumer.pending_auth = None
    await _authenticated(consumer, attendee)


async def _authenticated(consumer: WorldConsumer, attendee: Attendee) -> None:
    welcome, limit = consumer.world.welcome(attendee.pk, attendee.traits)
    consumer.user_id, consumer.traits = attendee.pk, attendee.traits
    await consumer.send_frame(["authenticated", welcome])
    consumer.slot_user, consumer.slot_limit = attendee.pk, limit
    consumer.slot_since = time.time()
    async with outage.tolerated("claim a connection_limit slot"):
        await outage.claim_slot(consumer)
