"""Worlds: creating, cloning, importing and exporting them, and their access tokens.

Management commands, the admin, the REST API, the WebSocket consumer and other apps
all call these functions; none of them touches the models' rules directly.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import re
import secrets
import string
import uuid
import zoneinfo
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts import services as accounts
from apps.accounts.models import TermsAcceptance, User
from apps.core import deletion
from apps.core.deletion import PurgeReport
from apps.core.validation import (
    INTEGER_MAX,
    INTEGER_MIN,
    MAX_JSON_DEPTH,
    integer_problem,
    json_depth,
    json_path,
    json_problems,
    load_json,
    text_problem,
)

from .models import DOMAIN_RE, WORLD_ID_RE, Room, World
from .signals import world_changed

DEFAULT_ISSUER = "any"
DEFAULT_AUDIENCE = "stagehand"
SECRET_LENGTH = 64
# RFC 7518 §3.2: an HS256 key shorter than the hash output is weak (PyJWT warns too).
MIN_SECRET_LENGTH = 32
TOKEN_ALGORITHM = "HS256"

# What a token may hold: generate_token never issues a token outside these, and
# verify_token refuses one (docs/connections.md, "Tokens").
TOKEN_MAX_DAYS = 3650
TOKEN_MAX_LENGTH = 16384  # characters of the encoded token
# Of its header and claims: {"traits": [...]} is 2, "aud" may be a list too.
TOKEN_MAX_DEPTH = 4
UID_MAX_LENGTH = 200  # accounts.User.token_id, where the uid is stored
TRAIT_MAX_LENGTH = 200
MAX_TRAITS = 200
# exp, nbf and iat: whole seconds up to 9999-12-31T23:59:59Z, the last a datetime holds.
MAX_TIMESTAMP = 253402300799
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# A new world lets every token holder in; moderator and admin are granted by traits.
DEFAULT_ROLES: dict[str, list[str]] = {
    "attendee": ["world:view", "room:view", "room:chat.read", "room:chat.send"],
    "moderator": [
        "world:view",
        "world:announce",
        "room:view",
        "room:chat.read",
        "room:chat.send",
        "room:chat.moderate",
    ],
    "admin": [
        "world:view",
        "world:update",
        "world:users.manage",
        "world:connections.unlimited",
        "room:view",
        "room:chat.read",
        "room:chat.send",
        "room:chat.moderate",
        "room:update",
        "room:delete",
    ],
}
DEFAULT_TRAIT_GRANTS: dict[str, list[Any]] = {
    "attendee": [],
    "moderator": ["moderator"],
    "admin": ["admin"],
}

# The world-config format (venueless): the keys each part may have.
WORLD_FIELDS = (
    "domain",
    "locale",
    "timezone",
)  # world keys that are columns, not config
ROOM_COLUMNS = (
    "id",
    "name",
    "description",
    "sorting_priority",
    "trait_grants",
    "modules",
)
# Room keys venueless knows that Stagehand keeps verbatim in Room.extra.
ROOM_EXTRA_KEYS = (
    "picture",
    "pretalx_id",
    "force_join",
    "hidden",
    "sidebar_hidden",
    "setup_complete",
)
# Top-level sections without a model here: kept in World.extra, exported unchanged.
PASSTHROUGH_SECTIONS = ("exhibitors", "polls", "questions", "schedule", "announcements")
TOP_LEVEL_KEYS = ("world", "roles", "trait_grants", "rooms") + PASSTHROUGH_SECTIONS

# The limits a config must respect: the columns' lengths and the integer column's
# range, so that nothing the validator accepts is refused by the database, and a
# nesting depth that export (copy.deepcopy, json.dumps) also handles.
WORLD_ID_MAX = World._meta.get_field("id").max_length
TITLE_MAX = World._meta.get_field("title").max_length
DOMAIN_MAX = World._meta.get_field("domain").max_length
LOCALE_MAX = World._meta.get_field("locale").max_length
TIMEZONE_MAX = World._meta.get_field("timezone").max_length
ROOM_ID_MAX = Room._meta.get_field("import_id").max_length
ROOM_NAME_MAX = Room._meta.get_field("name").max_length
MAX_CONFIG_DEPTH = MAX_JSON_DEPTH


class WorldNotFound(LookupError):
    """No world with that id, or it is soft-deleted."""


class WorldError(ValueError):
    """A world cannot be created or changed as asked; the message says why."""


class TokenError(Exception):
    """A token was refused; ``code`` is one of ``auth.*_token``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ConfigError(ValueError):
    """A world config is invalid; ``problems`` are ``(json_path, message)`` pairs."""

    problems: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(f"{path}: {message}" for path, message in self.problems)


# Looking worlds up
# ------------------------------------------------------------------------------


def get_world(world_id: str) -> World:
    """Return the live world ``world_id``; WorldNotFound if unknown or soft-deleted."""
    if not is_possible_world_id(world_id):
        raise WorldNotFound(f"No world {world_id!r}.")
    try:
        return World.objects.alive().get(pk=world_id)
    except World.DoesNotExist:
        raise WorldNotFound(f"No world {world_id!r}.") from None


def is_possible_world_id(world_id: Any) -> bool:
    """Whether ``world_id`` could name a world, so that looking it up is safe.

    Text longer than the column, or with a NUL (which PostgreSQL refuses in a query)
    or a lone surrogate (which no driver can encode), names no world: callers treat
    it as unknown instead of failing. Ids stored before ``fullmatch`` was enforced
    stay reachable, so this is not the check a new id must pass (check_world_id).
    """
    return (
        isinstance(world_id, str)
        and 0 < len(world_id) <= World._meta.get_field("id").max_length
        and text_problem(world_id) is None
    )


def list_worlds(include_deleted: bool = False, search: str = "") -> list[World]:
    """Return the worlds ordered by id, soft-deleted ones only when asked; with
    ``search``, only those whose id, title or domain contains it (case ignored)."""
    qs = World.objects.all() if include_deleted else World.objects.alive()
    if search:
        qs = qs.filter(
            Q(id__icontains=search)
            | Q(title__icontains=search)
            | Q(domain__icontains=search)
        )
    return list(qs.order_by("id"))


# Validation of single values
# ------------------------------------------------------------------------------


def check_world_id(world_id: str) -> str | None:
    """Return what is wrong with ``world_id`` as a new world's id, or None."""
    if not world_id:
        return "The world ID is empty."
    if len(world_id) > WORLD_ID_MAX:
        return f"The world ID is longer than {WORLD_ID_MAX} characters."
    if not re.fullmatch(WORLD_ID_RE, world_id):
        return (
            f"The world ID {world_id!r} may only contain lowercase letters and "
            "digits, such as 'harborconf2027'."
        )
    return None


def check_title(title: str) -> str | None:
    """Return what is wrong with ``title`` (stripped) as a world's title, or None."""
    if not title.strip():
        return "The title is empty."
    problem = text_problem(title.strip(), TITLE_MAX)
    return f"The title {problem}." if problem else None


def normalize_domain(domain: str) -> str:
    return domain.strip().lower().rstrip("/")


def check_domain(domain: str) -> str | None:
    """Return what is wrong with ``domain`` (a host name, optionally with a port)."""
    if not domain:
        return "The domain is empty."
    if len(domain) > DOMAIN_MAX:
        return f"The domain is longer than {DOMAIN_MAX} characters."
    if "://" in domain or "/" in domain:
        return (
            f"The domain {domain!r} must be a host name only, such as "
            "'events.example.org' (no scheme, no path)."
        )
    if not DOMAIN_RE.fullmatch(domain):
        return (
            f"The domain {domain!r} is not a valid host name, such as "
            "'events.example.org' or 'localhost:8000'."
        )
    return None


def new_world_id_problem(world_id: str) -> str | None:
    """Return why ``world_id`` cannot be a new world's id (invalid or taken), or None."""
    problem = check_world_id(world_id)
    if problem is None and World.objects.filter(pk=world_id).exists():
        problem = (
            f"A world with the ID {world_id!r} already exists; choose another ID "
            "(list_worlds --all shows the taken ones)."
        )
    return problem


def new_domain_problem(domain: str) -> str | None:
    """Return why ``domain`` cannot be a new world's domain (invalid or taken), or None."""
    problem = check_domain(domain)
    if problem is None:
        owner = World.objects.filter(domain=domain).first()
        if owner is not None:
            problem = (
                f"The domain {domain!r} is already used by world {owner.id!r}; "
                "choose another domain."
            )
    return problem


def check_new_world(world_id: str, domain: str) -> list[str]:
    """Return every reason a new world with this id and domain cannot be created."""
    problems = [new_world_id_problem(world_id), new_domain_problem(domain)]
    return [problem for problem in problems if problem]


def new_secret() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(SECRET_LENGTH))


def default_jwt_secrets() -> list[dict[str, str]]:
    return [
        {"issuer": DEFAULT_ISSUER, "audience": DEFAULT_AUDIENCE, "secret": new_secret()}
    ]


# Creating, cloning, deleting
# ------------------------------------------------------------------------------


def create_world(world_id: str, title: str, domain: str) -> World:
    """Create a world with default roles and one fresh JWT secret.

    Raise WorldError (with every problem) when the id or domain is invalid or taken.
    """
    title, domain = _checked_new_world(world_id, title, domain)
    with _creating_world(world_id, domain):
        return World.objects.create(
            id=world_id,
            title=title,
            domain=domain,
            config={"JWT_secrets": default_jwt_secrets()},
            roles=copy.deepcopy(DEFAULT_ROLES),
            trait_grants=copy.deepcopy(DEFAULT_TRAIT_GRANTS),
        )


def clone_world(
    source: World, world_id: str, title: str, domain: str, new_secrets: bool = False
) -> World:
    """Copy ``source``'s settings and live rooms into a new world; no users, no content.

    ``new_secrets`` replaces the JWT secrets with one fresh default secret, so tokens
    of the source world do not open the clone.
    """
    title, domain = _checked_new_world(world_id, title, domain)
    config = copy.deepcopy(source.config)
    if new_secrets:
        config["JWT_secrets"] = default_jwt_secrets()
    with _creating_world(world_id, domain):
        world = World.objects.create(
            id=world_id,
            title=title,
            domain=domain,
            config=config,
            roles=copy.deepcopy(source.roles),
            trait_grants=copy.deepcopy(source.trait_grants),
            extra=copy.deepcopy(source.extra),
            locale=source.locale,
            timezone=source.timezone,
        )
        Room.objects.bulk_create(
            Room(
                world=world,
                import_id=room.import_id,
                name=room.name,
                description=room.description,
                sorting_priority=room.sorting_priority,
                modules=copy.deepcopy(room.modules),
                trait_grants=copy.deepcopy(room.trait_grants),
                extra=copy.deepcopy(room.extra),
            )
            for room in source.rooms.filter(deleted_at__isnull=True)
        )
    return world


def _checked_new_world(world_id: str, title: str, domain: str) -> tuple[str, str]:
    """Return the stripped title and normalized domain, or raise WorldError with
    every problem."""
    domain = normalize_domain(domain)
    problems = check_new_world(world_id, domain)
    problem = check_title(title)
    if problem:
        problems.append(problem)
    if problems:
        raise WorldError(" ".join(problems))
    return title.strip(), domain


@contextmanager
def _creating_world(world_id: str, domain: str) -> Iterator[None]:
    """One transaction; a world created concurrently since the check is a WorldError."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise WorldError(
            f"A world with the ID {world_id!r} or domain {domain!r} already exists."
        ) from exc


def deletion_counts(world: World) -> dict[str, int]:
    """Return how many rows go with ``world`` when it is purged, counted as
    ``purge --dry-run`` counts them."""
    counts = _world_rows(World.objects.filter(pk=world.pk))
    return {what: rows.count() for what, rows in counts.items()}


def delete_world(world: World) -> dict[str, int]:
    """Soft-delete ``world`` (the purge job removes it later); return the counts."""
    counts = deletion_counts(world)
    # Conditional update: deleting twice, or concurrently, changes nothing.
    World.objects.filter(pk=world.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), updated_at=timezone.now()
    )
    world_changed.send(sender=World, world_id=world.pk)
    world.refresh_from_db()
    return counts


# Purge
# ------------------------------------------------------------------------------

# Measured at 1,000,000 rows: 20,000 is 1.19x the raw SQL against 1.58x at 5,000
# (fewer commits and statements), at the same flat memory; a batch of messages
# still commits in well under a second (docs/benchmarks.md).
PURGE_BATCH = 20_000
PURGE_SECTIONS = ("worlds", "rooms", "users")


def _world_rows(worlds: Any) -> dict[str, Any]:
    """Return what goes with ``worlds``, in the order it is shown: the worlds, their
    rooms, the rooms' messages and the attendees."""
    return {
        "worlds": worlds,
        "rooms": deletion.related_rows(worlds, "rooms"),
        "messages": deletion.related_rows(worlds, "rooms__messages"),
        "attendees": deletion.related_rows(worlds, "attendees"),
    }


def purge(
    *,
    worlds: bool = True,
    rooms: bool = True,
    users: bool = True,
    dry_run: bool = False,
    batch_size: int = PURGE_BATCH,
    worlds_first: bool = False,
    on_batch: deletion.OnBatch | None = None,
) -> PurgeReport:
    """Remove what was soft-deleted: worlds (with their rooms, messages and
    attendees), rooms (with their messages) and users.

    Leaves go first (messages, then rooms, then attendees, then the world) in
    bounded batches, each its own transaction (``apps.core.deletion``), so memory
    stays flat, no transaction holds millions of rows, and an interrupted purge
    leaves consistent data that a rerun finishes. Users are the accounts app's
    (``accounts.services.purge_users``).

    ``worlds_first`` says soft-deleted worlds are (being) purged too, so a dry run
    does not count their rooms and attendees twice.
    """
    report = PurgeReport(dry_run=dry_run)
    skip_worlds = worlds or worlds_first
    if worlds:
        _purge_worlds(report, dry_run, batch_size, on_batch)
    if rooms:
        _purge_rooms(report, dry_run, batch_size, on_batch, skip_worlds)
    if users:
        accounts.purge_users(
            report,
            dry_run=dry_run,
            batch_size=batch_size,
            on_batch=on_batch,
            skip_deleted_worlds=skip_worlds,
        )
    return report


def _purge_worlds(
    report: PurgeReport, dry_run: bool, batch: int, on_batch: Any
) -> None:
    rows = _world_rows(World.objects.filter(deleted_at__isnull=False))
    for what in rows:
        report.add("worlds", f"{what} deleted", 0)  # the order they are shown in
    if dry_run:
        for what, queryset in rows.items():
            report.add("worlds", f"{what} deleted", queryset.count())
        return
    # A world's rows once its rooms and attendees are gone: small batches suffice.
    batches = {"worlds": max(1, batch // 50)}
    for what in ("messages", "rooms", "attendees", "worlds"):
        queryset = rows[what]
        done = deletion.delete_in_batches(queryset, batches.get(what, batch), on_batch)
        report.add("worlds", f"{what} deleted", done.get(queryset.model._meta.label, 0))


def _purge_rooms(
    report: PurgeReport, dry_run: bool, batch: int, on_batch: Any, skip_worlds: bool
) -> None:
    rooms = Room.objects.filter(deleted_at__isnull=False)
    if skip_worlds:
        rooms = rooms.filter(world__deleted_at__isnull=True)
    rows = {"rooms": rooms, "messages": deletion.related_rows(rooms, "messages")}
    for what in rows:
        report.add("rooms", f"{what} deleted", 0)
    if dry_run:
        for what, queryset in rows.items():
            report.add("rooms", f"{what} deleted", queryset.count())
        return
    for what in ("messages", "rooms"):
        queryset = rows[what]
        done = deletion.delete_in_batches(queryset, batch, on_batch)
        report.add("rooms", f"{what} deleted", done.get(queryset.model._meta.label, 0))


# Config import and export
# ------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_trait_grants(value: Any, path: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, dict):
        problems.append((path, f"must be an object, not {_type_name(value)}"))
        return
    for role, grants in value.items():
        here = json_path(path, role)
        if not isinstance(grants, list):
            problems.append((here, f"must be a list, not {_type_name(grants)}"))
            continue
        for i, grant in enumerate(grants):
            if isinstance(grant, str):
                continue
            if isinstance(grant, list) and all(isinstance(t, str) for t in grant):
                continue
            problems.append(
                (f"{here}[{i}]", "must be a trait or a list of traits (any of them)")
            )


def validate_config(data: Any) -> list[tuple[str, str]]:
    """Return every problem of a world-config document as (JSON path, message)."""
    if not isinstance(data, dict):
        return [("$", f"must be an object, not {_type_name(data)}")]
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                (
                    json_path("$", key),
                    f"unknown key; expected one of {', '.join(TOP_LEVEL_KEYS)}",
                )
            )

    world = data.get("world")
    if "world" not in data:
        problems.append(("$.world", "is missing"))
    elif not isinstance(world, dict):
        problems.append(("$.world", f"must be an object, not {_type_name(world)}"))
    else:
        world_id = world.get("id")
        if not isinstance(world_id, str):
            problems.append(("$.world.id", "is missing or not a string"))
        else:
            problem = check_world_id(world_id)
            if problem:
                problems.append(("$.world.id", problem))
        title = world.get("title")
        if not isinstance(title, str) or not title.strip():
            problems.append(("$.world.title", "is missing or not a non-empty string"))
        else:
            _check_length(title.strip(), "$.world.title", TITLE_MAX, problems)
        if world.get("domain") is not None:
            domain = world["domain"]
            problem = (
                check_domain(domain)
                if isinstance(domain, str)
                else f"must be a string, not {_type_name(domain)}"
            )
            if problem:
                problems.append(("$.world.domain", problem))
        if "locale" in world:
            if not isinstance(world["locale"], str) or not world["locale"]:
                problems.append(("$.world.locale", "must be a non-empty string"))
            else:
                _check_length(world["locale"], "$.world.locale", LOCALE_MAX, problems)
        if "timezone" in world:
            _check_timezone(world["timezone"], problems)
        _check_jwt_secrets(world, problems)
        if "connection_limit" in world:
            problem = integer_problem(world["connection_limit"], 0, INTEGER_MAX)
            if problem:
                problems.append(("$.world.connection_limit", problem))
        if "profile_fields" in world and not isinstance(world["profile_fields"], list):
            problems.append(("$.world.profile_fields", "must be a list"))

    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        problems.append(("$.roles", f"must be an object, not {_type_name(roles)}"))
    else:
        for role, permissions in roles.items():
            if not isinstance(permissions, list) or not all(
                isinstance(p, str) for p in permissions
            ):
                problems.append(
                    (json_path("$.roles", role), "must be a list of permissions")
                )

    _check_trait_grants(data.get("trait_grants", {}), "$.trait_grants", problems)

    rooms = data.get("rooms", [])
    if not isinstance(rooms, list):
        problems.append(("$.rooms", f"must be a list, not {_type_name(rooms)}"))
        rooms = []
    seen: dict[str, int] = {}
    for i, room in enumerate(rooms):
        _check_room(room, f"$.rooms[{i}]", i, seen, problems)
    # Text, numbers and depth everywhere (the checks above read only the parts they
    # know, and never recurse); a path the checks above explain is not repeated.
    explained = {path for path, _ in problems}
    general = json_problems(data, max_depth=MAX_CONFIG_DEPTH)
    return [p for p in general if p[0] not in explained] + problems


def _check_length(
    value: str, path: str, max_length: int, problems: list[tuple[str, str]]
) -> None:
    if len(value) > max_length:
        problems.append(
            (path, f"is longer than {max_length} characters ({len(value)})")
        )


def _check_timezone(tz: Any, problems: list[tuple[str, str]]) -> None:
    path = "$.world.timezone"
    if not isinstance(tz, str):
        problems.append((path, f"must be a time zone name, not {_type_name(tz)}"))
        return
    if len(tz) > TIMEZONE_MAX:
        _check_length(tz, path, TIMEZONE_MAX, problems)
        return
    try:
        zoneinfo.ZoneInfo(tz)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        # OSError: a name the file system refuses (too long a path component).
        problems.append((path, f"{tz!r} is not a time zone, such as 'UTC'"))


def _check_jwt_secrets(world: dict, problems: list[tuple[str, str]]) -> None:
    if "JWT_secrets" not in world:
        return
    entries = world["JWT_secrets"]
    if not isinstance(entries, list):
        problems.append(
            ("$.world.JWT_secrets", f"must be a list, not {_type_name(entries)}")
        )
        return
    for i, entry in enumerate(entries):
        path = f"$.world.JWT_secrets[{i}]"
        if not isinstance(entry, dict):
            problems.append((path, f"must be an object, not {_type_name(entry)}"))
            continue
        for key in ("issuer", "audience", "secret"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                problems.append((f"{path}.{key}", "is missing or not a string"))
        for key in entry:
            if key not in ("issuer", "audience", "secret"):
                problems.append(
                    (
                        json_path(path, key),
                        "unknown key; expected issuer, audience, secret",
                    )
                )
        secret = entry.get("secret")
        if isinstance(secret, str) and secret and len(secret) < MIN_SECRET_LENGTH:
            problems.append(
                (
                    f"{path}.secret",
                    f"is {len(secret)} characters; an HS256 secret needs at least "
                    f"{MIN_SECRET_LENGTH}",
                )
            )


def jwt_secrets_problems(config: Any) -> list[tuple[str, str]]:
    """Return what is wrong with a stored world's ``config["JWT_secrets"]``."""
    if not isinstance(config, dict):
        return [("$.config", f"must be an object, not {_type_name(config)}")]
    problems: list[tuple[str, str]] = []
    _check_jwt_secrets(config, problems)
    # Paths as the stored world has them, not as in a config file.
    return [(path.replace("$.world.", "config.", 1), text) for path, text in problems]


# What the admin shows in place of a JWT secret. No real secret can look like it:
# a secret needs MIN_SECRET_LENGTH characters.
MASKED_SECRET = "********"


def mask_secrets(config: Any) -> Any:
    """Return ``config`` with every JWT secret replaced by MASKED_SECRET."""
    if not isinstance(config, dict) or not isinstance(config.get("JWT_secrets"), list):
        return config
    masked = copy.deepcopy(config)
    for entry in masked["JWT_secrets"]:
        if isinstance(entry, dict) and "secret" in entry:
            entry["secret"] = MASKED_SECRET
    return masked


def restore_secrets(config: Any, stored: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Return ``config`` with each MASKED_SECRET put back from ``stored``, matched by
    issuer and audience (so reordering entries never swaps secrets), and the
    problems of masks with no stored secret to stand for."""
    if not isinstance(config, dict) or not isinstance(config.get("JWT_secrets"), list):
        return config, []
    known = {}
    stored = stored if isinstance(stored, dict) else {}
    for entry in stored.get("JWT_secrets") or []:
        if isinstance(entry, dict):
            known[(entry.get("issuer"), entry.get("audience"))] = entry.get("secret")
    restored = copy.deepcopy(config)
    problems = []
    for i, entry in enumerate(restored["JWT_secrets"]):
        if not isinstance(entry, dict) or entry.get("secret") != MASKED_SECRET:
            continue
        secret = known.get((entry.get("issuer"), entry.get("audience")))
        if secret is None:
            problems.append(
                (
                    f"$.world.JWT_secrets[{i}].secret",
                    f"{MASKED_SECRET} keeps a stored secret, and none is stored for "
                    "this issuer and audience; enter the secret itself",
                )
            )
        else:
            entry["secret"] = secret
    return restored, problems


def config_document(
    *,
    world_id: str,
    title: str,
    columns: dict[str, Any],
    config: Any,
    roles: Any,
    trait_grants: Any,
    extra: Any,
) -> dict[str, Any]:
    """Return a stored world's parts as the world-config document import_config
    reads, so that what validate_config refuses there is refused everywhere."""
    world = {**config} if isinstance(config, dict) else {}
    world.update({"id": world_id, "title": title, **columns})
    document: dict[str, Any] = {**extra} if isinstance(extra, dict) else {}
    document.update(world=world, roles=roles, trait_grants=trait_grants)
    return document


def _check_room(
    room: Any,
    path: str,
    index: int,
    seen: dict[str, int],
    problems: list[tuple[str, str]],
) -> None:
    if not isinstance(room, dict):
        problems.append((path, f"must be an object, not {_type_name(room)}"))
        return
    for key in room:
        if key not in ROOM_COLUMNS + ROOM_EXTRA_KEYS:
            problems.append(
                (
                    json_path(path, key),
                    "unknown key; expected one of "
                    + ", ".join(ROOM_COLUMNS + ROOM_EXTRA_KEYS),
                )
            )
    room_id = room.get("id")
    if isinstance(room_id, int) and not isinstance(room_id, bool):
        room_id = str(room_id)
    if not isinstance(room_id, str) or not room_id:
        problems.append((f"{path}.id", "is missing or not a string"))
    elif len(room_id) > ROOM_ID_MAX:
        problems.append((f"{path}.id", f"is longer than {ROOM_ID_MAX} characters"))
    elif room_id in seen:
        problems.append(
            (f"{path}.id", f"{room_id!r} is also the id of $.rooms[{seen[room_id]}]")
        )
    else:
        seen[room_id] = index
    name = room.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append((f"{path}.name", "is missing or not a non-empty string"))
    else:
        _check_length(name.strip(), f"{path}.name", ROOM_NAME_MAX, problems)
    if "description" in room and not isinstance(room["description"], str | None):
        problems.append((f"{path}.description", "must be a string"))
    problem = integer_problem(room.get("sorting_priority", 0), INTEGER_MIN, INTEGER_MAX)
    if problem:
        problems.append((f"{path}.sorting_priority", problem))
    _check_trait_grants(room.get("trait_grants", {}), f"{path}.trait_grants", problems)
    modules = room.get("modules", [])
    if not isinstance(modules, list):
        problems.append(
            (f"{path}.modules", f"must be a list, not {_type_name(modules)}")
        )
        return
    for j, module in enumerate(modules):
        here = f"{path}.modules[{j}]"
        if not isinstance(module, dict):
            problems.append((here, f"must be an object, not {_type_name(module)}"))
            continue
        if not isinstance(module.get("type"), str) or not module["type"]:
            problems.append((f"{here}.type", "is missing or not a string"))
        if "config" in module and not isinstance(module["config"], dict):
            problems.append((f"{here}.config", "must be an object"))


def parse_config(text: str | bytes) -> dict[str, Any]:
    """Parse and validate a world-config document; ConfigError lists every problem."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")  # editors on Windows add a BOM
        data = load_json(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError([("$", f"is not valid JSON: {exc}")]) from None
    problems = validate_config(data)
    if problems:
        raise ConfigError(problems)
    return data


@dataclass
class ImportResult:
    world: World
    created: bool
    rooms_created: int
    rooms_updated: int
    rooms_deleted: int
    # (config id, name) of each room soft-deleted because the document lacks it.
    deleted_rooms: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False


def import_config(data: dict[str, Any], *, dry_run: bool = False) -> ImportResult:
    """Create or update the world ``data["world"]["id"]`` from a config document.

    All in one transaction: on any problem (ConfigError, WorldError) nothing is written.
    Rooms are matched by their config id; rooms missing from the document are
    soft-deleted, and ones that reappear are restored. ``dry_run`` does all of it,
    checks included, and rolls it back: the result is what an import would do.
    """
    problems = validate_config(data)
    if problems:
        raise ConfigError(problems)
    world_data = dict(data["world"])
    world_id = world_data.pop("id")
    title = world_data.pop("title").strip()
    columns = {key: world_data.pop(key) for key in WORLD_FIELDS if key in world_data}
    if columns.get("domain") is not None:
        columns["domain"] = normalize_domain(columns["domain"])
    extra = {key: data[key] for key in PASSTHROUGH_SECTIONS if key in data}

    with transaction.atomic():
        world = World.objects.select_for_update().filter(pk=world_id).first()
        if world is not None and world.deleted_at is not None:
            raise WorldError(
                f"World {world_id!r} is deleted and waits for the purge job; import "
                "under another id, or purge it first."
            )
        domain = columns.get("domain")
        if domain:
            owner = World.objects.filter(domain=domain).exclude(pk=world_id).first()
            if owner is not None:
                raise ConfigError(
                    [("$.world.domain", f"{domain!r} is used by world {owner.id!r}")]
                )
        created = world is None
        if created:
            world = World(id=world_id)
        world.title = title
        world.config = world_data
        world.roles = data.get("roles", {})
        world.trait_grants = data.get("trait_grants", {})
        world.extra = extra
        for key, value in columns.items():
            setattr(world, key, value)
        world.save()

        existing = {room.import_id: room for room in world.rooms.all()}
        result = ImportResult(world, created, 0, 0, 0, dry_run=dry_run)
        keep = set()
        for index, room_data in enumerate(data.get("rooms", [])):
            import_id = str(room_data["id"])
            keep.add(import_id)
            room = existing.get(import_id)
            if room is None:
                room = Room(world=world, import_id=import_id)
                result.rooms_created += 1
            else:
                result.rooms_updated += 1
            room.name = room_data["name"].strip()
            room.description = room_data.get("description") or ""
            room.sorting_priority = room_data.get("sorting_priority", index)
            room.trait_grants = room_data.get("trait_grants", {})
            room.modules = room_data.get("modules", [])
            room.extra = {k: room_data[k] for k in ROOM_EXTRA_KEYS if k in room_data}
            room.deleted_at = None
            room.save()
        for import_id, room in existing.items():
            if import_id not in keep and room.deleted_at is None:
                room.deleted_at = timezone.now()
                room.save(update_fields=["deleted_at", "updated_at"])
                result.rooms_deleted += 1
                result.deleted_rooms.append((import_id, room.name))
        if dry_run:
            # Nothing is kept, and no on_commit hook (the search index) runs.
            transaction.set_rollback(True)
    return result


def export_config(world: World) -> dict[str, Any]:
    """Return ``world`` in the world-config format; import_config gives it back."""
    world_section: dict[str, Any] = {"id": world.id, "title": world.title}
    if world.domain:
        world_section["domain"] = world.domain
    world_section["locale"] = world.locale
    world_section["timezone"] = world.timezone
    world_section.update(copy.deepcopy(world.config))
    rooms = []
    for room in world.rooms.filter(deleted_at__isnull=True).order_by(
        "sorting_priority", "name", "pk"
    ):
        rooms.append(
            {
                "id": room.import_id,
                "name": room.name,
                "description": room.description,
                "sorting_priority": room.sorting_priority,
                "trait_grants": copy.deepcopy(room.trait_grants),
                "modules": copy.deepcopy(room.modules),
                **copy.deepcopy(room.extra),
            }
        )
    return {
        "world": world_section,
        "roles": copy.deepcopy(world.roles),
        "trait_grants": copy.deepcopy(world.trait_grants),
        "rooms": rooms,
        **copy.deepcopy(world.extra),
    }


# Permissions
# ------------------------------------------------------------------------------


def roles_for_traits(trait_grants: dict, traits: Iterable[str]) -> set[str]:
    """Return the roles whose grants ``traits`` satisfy.

    A role's grant is a list; every item must be satisfied: a string by having that
    trait, an inner list by having any one of its traits. An empty list grants the
    role to everyone.
    """
    have = set(traits)
    granted = set()
    for role, grants in (trait_grants or {}).items():
        if not isinstance(grants, list):
            continue
        if all(
            (bool(have.intersection(item)) if isinstance(item, list) else item in have)
            for item in grants
        ):
            granted.add(role)
    return granted


def permissions_for(
    world: World, traits: Iterable[str], room: Room | None = None
) -> set[str]:
    """Return the permissions ``traits`` give in ``world`` (and in ``room`` if given)."""
    traits = list(traits)
    roles = roles_for_traits(world.trait_grants, traits)
    if room is not None:
        roles |= roles_for_traits(room.trait_grants, traits)
    permissions: set[str] = set()
    for role in roles:
        permissions.update(world.roles.get(role, []))
    return permissions


def visible_rooms(world: World, traits: Iterable[str]) -> list[Room]:
    """Return the live rooms ``traits`` may view, by sorting priority, then name."""
    traits = list(traits)
    rooms = world.rooms.filter(deleted_at__isnull=True).order_by(
        "sorting_priority", "name", "pk"
    )
    return [r for r in rooms if "room:view" in permissions_for(world, traits, r)]


# Tokens
# ------------------------------------------------------------------------------


def claims_problem(claims: dict[str, Any]) -> str | None:
    """Return why a token with ``claims`` could not log in, or None.

    The one set of rules for what a token carries: ``exp`` (required), ``nbf`` and
    ``iat`` whole seconds from 0 to MAX_TIMESTAMP (no floats, no Infinity or NaN);
    ``uid`` a string of 1 to UID_MAX_LENGTH characters, ``traits`` a list of at most
    MAX_TRAITS strings of at most TRAIT_MAX_LENGTH characters, neither with a NUL
    or a lone surrogate (what the database cannot store). generate_token checks its
    claims with it, and verify_token a signed token's.
    """
    if "exp" not in claims:
        return "The token has no exp claim."
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name, 0)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value <= MAX_TIMESTAMP
        ):
            return (
                f"The token's {name} claim must be whole seconds since 1970, "
                f"from 0 to {MAX_TIMESTAMP}."
            )
    uid = claims.get("uid")
    if not isinstance(uid, str) or not uid:
        return "The token has no uid claim."
    if len(uid) > UID_MAX_LENGTH:
        return f"The token's uid is longer than {UID_MAX_LENGTH} characters."
    if problem := text_problem(uid):
        return f"The token's uid {problem}."
    traits = claims.get("traits", [])
    if not isinstance(traits, list) or not all(isinstance(t, str) for t in traits):
        return "The token's traits claim is not a list of strings."
    if len(traits) > MAX_TRAITS:
        return f"The token has more than {MAX_TRAITS} traits."
    for trait in traits:
        if len(trait) > TRAIT_MAX_LENGTH:
            return f"The token has a trait longer than {TRAIT_MAX_LENGTH} characters."
        if problem := text_problem(trait):
            return f"The token's trait {trait!r} {problem}."
    return None


def generate_token(
    world: World, traits: list[str], days: int = 90, uid: str | None = None
) -> str:
    """Return an HS256 JWT for ``world``, signed with its first JWT secret.

    WorldError when the token could not log in (claims_problem) or would be longer
    than TOKEN_MAX_LENGTH: such a token is never issued.
    """
    entries = (world.config or {}).get("JWT_secrets") or []
    if not entries:
        raise WorldError(
            f"World {world.id!r} has no JWT secret; add one to world.JWT_secrets with "
            "import_config, or clone it with --new-secrets."
        )
    if (
        not isinstance(days, int)
        or isinstance(days, bool)
        or not 1 <= days <= TOKEN_MAX_DAYS
    ):
        raise WorldError(
            f"A token is valid for 1 to {TOKEN_MAX_DAYS} days (ten years), "
            f"not {days!r}."
        )
    entry = entries[0]
    now = timezone.now()
    claims = {
        "iss": entry["issuer"],
        "aud": entry["audience"],
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(days=days)).timestamp()),
        "uid": uid or str(uuid.uuid4()),
        "traits": list(dict.fromkeys(traits)),
    }
    if problem := claims_problem(claims):
        raise WorldError(f"{problem} No token was issued.")
    # PyJWT (with the cryptography it loads) is ~30 ms of CPU that every manage.py
    # command would pay through the admin's import of this module (bench/startup.py).
    import jwt  # noqa: PLC0415

    token = jwt.encode(claims, entry["secret"], algorithm=TOKEN_ALGORITHM)
    if len(token) > TOKEN_MAX_LENGTH:
        raise WorldError(
            f"The token would be {len(token)} characters, more than the "
            f"{TOKEN_MAX_LENGTH} a login accepts; give fewer or shorter traits."
        )
    return token


def token_url(world: World, token: str) -> str:
    return f"https://{world.domain}/#token={token}"


def verify_token(world: World, token: str | None) -> dict[str, Any]:
    """Return the claims of ``token`` for ``world``, or raise TokenError.

    Every ``JWT_secrets`` entry is tried with its own issuer and audience; only HS256
    is accepted and the claims must follow claims_problem's rules (``exp`` is
    required). An expired token is told apart from an invalid one only when its
    signature, issuer and audience are right. Before any decoding, a token must be
    three base64url parts of at most TOKEN_MAX_LENGTH characters whose JSON nests at
    most TOKEN_MAX_DEPTH deep; whatever it holds, the answer is a TokenError.
    """
    if not token:
        raise TokenError("auth.missing_token", "No token was given.")
    if not isinstance(token, str):
        raise TokenError("auth.invalid_token", "The token is not a string.")
    if not _well_formed(token):
        raise TokenError(
            "auth.invalid_token",
            "The token is not a JWT: three base64url parts joined by dots, at most "
            f"{TOKEN_MAX_LENGTH} characters, its JSON nested at most "
            f"{TOKEN_MAX_DEPTH} deep.",
        )
    # Imported here for start-up's sake, as in generate_token.
    import jwt  # noqa: PLC0415

    expired = False
    for entry in (world.config or {}).get("JWT_secrets") or []:
        try:
            claims = jwt.decode(
                token,
                entry["secret"],
                algorithms=[TOKEN_ALGORITHM],
                audience=entry["audience"],
                issuer=entry["issuer"],
                options={"require": ["exp"], "verify_exp": False},
            )
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            # ValueError and TypeError: PyJWT passes some malformed claims on.
            continue
        if problem := claims_problem(claims):
            raise TokenError("auth.invalid_token", problem)
        if claims["exp"] <= timezone.now().timestamp():
            expired = True
            continue
        claims["traits"] = claims.get("traits", [])
        return claims
    if expired:
        raise TokenError("auth.expired_token", "The token has expired.")
    raise TokenError("auth.invalid_token", "The token is not valid for this world.")


def _well_formed(token: str) -> bool:
    if len(token) > TOKEN_MAX_LENGTH or not _JWT_SHAPE.fullmatch(token):
        return False
    for part in token.split(".")[:2]:
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            return False
        if json_depth(decoded) > TOKEN_MAX_DEPTH:
            return False
    return True


def get_or_create_attendee(world: World, claims: dict[str, Any]):
    """Return the attendee (the User) of ``world`` with the token's uid, creating it if
    new, as :func:`find_or_create_attendee` does."""
    return User.objects.get(pk=find_or_create_attendee(world, claims).pk)


@dataclass(frozen=True)
class Attendee:
    """Who a token logs in: the user's id, its traits, and which of the terms asked
    about it has accepted."""

    pk: int
    traits: list[str]
    accepted: frozenset[int] = frozenset()


def find_or_create_attendee(
    world: World, claims: dict[str, Any], terms: Iterable[int] = ()
) -> Attendee:
    """Return the attendee of ``world`` with the token's uid, creating it if new.

    As :func:`find_or_create_attendees` does for one token; raises its TokenError.
    """
    (found,) = find_or_create_attendees(world, [claims], terms)
    if isinstance(found, TokenError):
        raise found
    return found


def find_or_create_attendees(
    world: World, claims: list[dict[str, Any]], terms: Iterable[int] = ()
) -> list[Attendee | TokenError]:
    """Return the attendee of ``world`` for each token's claims, creating new ones.

    The users' traits become the tokens' traits. A deleted or deactivated
    attendee's token gets a TokenError in its place. ``terms`` are the ids of terms
    whose acceptance is looked up along. However many tokens, returning attendees
    cost one query on the (world, uid) index, and a write only for those whose
    traits changed; new ones one INSERT in one transaction, without the signals of a
    save (``search index -f`` catches them up; a new attendee's document holds only
    its generated username anyway). Several tokens of the same uid get the same
    attendee, with the last one's traits.
    """
    terms = list(terms)
    wanted = {str(c["uid"]): list(c.get("traits") or []) for c in claims}
    accepted = {
        f"accepted_{pk}": models.Exists(
            TermsAcceptance.objects.filter(user=models.OuterRef("pk"), terms_id=pk)
        )
        for pk in terms
    }
    rows = (
        User.objects.filter(world=world, token_id__in=list(wanted))
        .annotate(**accepted)
        .values_list("token_id", "pk", "traits", "is_active", "deleted_at", *accepted)
    )
    found: dict[str, Attendee | TokenError] = {}
    for uid, pk, stored_traits, is_active, deleted_at, *flags in rows:
        if deleted_at is not None or not is_active:
            # A purged (or deactivated) attendee's token must not bring it back.
            found[uid] = TokenError(
                "auth.invalid_token", "The account of this token was deleted."
            )
            continue
        if stored_traits != wanted[uid]:
            User.objects.filter(pk=pk).update(
                traits=wanted[uid], updated_at=timezone.now()
            )
        found[uid] = Attendee(
            pk,
            wanted[uid],
            frozenset(t for t, flag in zip(terms, flags, strict=True) if flag),
        )
    new = [
        User(
            world=world,
            token_id=uid,
            username=f"{world.id}.{uuid.uuid4().hex}",
            traits=traits,
            password="!",  # unusable: attendees never sign in with a password
        )
        for uid, traits in wanted.items()
        if uid not in found
    ]
    if new:
        try:
            with transaction.atomic():
                User.objects.bulk_create(new)
        except IntegrityError:
            # Another connection created one of them meanwhile: look again, once
            # they are there (anything else was a real error).
            uids = [user.token_id for user in new]
            if not User.objects.filter(world=world, token_id__in=uids).exists():
                raise
            return find_or_create_attendees(world, claims, terms)
        found.update((user.token_id, Attendee(user.pk, user.traits)) for user in new)
    return [found[str(c["uid"])] for c in claims]
