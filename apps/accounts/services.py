"""Accounts: operators and attendees, their rights, the terms they accept, and purging.

Commands, admin actions, the REST API and the consumer all call these functions; none of
them changes users any other way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.core import deletion
from apps.core.deletion import PurgeReport
from apps.core.validation import text_problem

from .models import Terms, TermsAcceptance, User, email_taken_message


class AccountError(Exception):
    """A request about accounts that cannot be done; the message says what to do."""


class UserNotFound(AccountError):
    pass


class TermsError(AccountError):
    pass


class PasswordRejected(AccountError):
    """The password validators said no; asking again may help."""


# Users and rights
# ------------------------------------------------------------------------------


def find_user(identifier: str) -> User:
    """Return the user whose username is ``identifier`` or whose email it is (any case)."""
    identifier = identifier.strip()
    matches = list(
        User.objects.filter(
            Q(username=identifier) | Q(email__iexact=identifier, email__gt="")
        )[:2]
    )
    if not matches:
        raise UserNotFound(
            f"No user with username or email {identifier!r}; "
            "check the spelling (the admin's user list can search)."
        )
    if len(matches) > 1:
        raise AccountError(
            f"{identifier!r} is the username of one user and the email of another; "
            "give the other user's username instead."
        )
    return matches[0]


def find_attendee(world_id: str, uid: str) -> User:
    """Return the attendee of world ``world_id`` who connected with token uid ``uid``."""
    try:
        return User.objects.get(world_id=world_id, token_id=uid)
    except User.DoesNotExist as exc:
        raise UserNotFound(
            f"No attendee with uid {uid!r} in world {world_id!r}; "
            "check both (the admin's user list filters by world)."
        ) from exc


def find_world(world_id: str):
    """Return the live world ``world_id`` that attendees can join; UserNotFound if
    unknown or soft-deleted.

    The world is reached through ``User.world``: accounts sit below worlds and
    import nothing of theirs (docs/architecture.md).
    """
    world_model = User._meta.get_field("world").related_model
    max_length = world_model._meta.pk.max_length
    if world_id and text_problem(world_id, max_length) is None:
        world = world_model.objects.filter(pk=world_id, deleted_at__isnull=True).first()
        if world is not None:
            return world
    raise UserNotFound(f"No world {world_id!r}.")


def find_purge_target(
    identifier: str | None, *, world: str | None = None, uid: str | None = None
) -> User:
    """Return the user named by username/email, or by world and token uid."""
    if world or uid:
        if identifier:
            raise AccountError(
                "Give either a username/email or --world with --uid, not both."
            )
        if not (world and uid):
            raise AccountError("An attendee is named by both --world and --uid.")
        return find_attendee(world, uid)
    if not identifier:
        raise AccountError("Name the user: a username or email, or --world and --uid.")
    return find_user(identifier)


def validate_new_password(password: str, user: User) -> None:
    """Raise PasswordRejected with every complaint of the configured password validators."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise PasswordRejected("Password rejected: " + " ".join(exc.messages)) from exc


def validate_new_email(email: str) -> str:
    """Return ``email`` stripped; AccountError unless it is valid and no user has it
    in any case."""
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise AccountError(f"{email!r} is not a valid email address.") from exc
    existing = User.objects.filter(email__iexact=email).values_list("email", flat=True)
    for other in existing[:1]:
        raise AccountError(email_taken_message(email, other))
    return email


def create_user(
    *,
    email: str,
    password: str,
    admin: bool = False,
    world=None,
    username: str | None = None,
) -> User:
    """Create a user who signs in with ``email`` (also the username unless given)."""
    email = validate_new_email(email)
    username = username or email
    if User.objects.filter(username=username).exists():
        raise AccountError(f"A user with username {username} already exists.")
    user = User(
        username=username,
        email=email,
        is_staff=admin,
        is_superuser=admin,
    )
    if world is not None:
        # An attendee is known by its token uid: generate_token --uid gives it a token.
        user.world = world
        user.token_id = str(uuid.uuid4())
    validate_new_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        # Someone else created the same email or username in the meantime.
        raise AccountError(
            f"A user with email {email} or username {username} already exists."
        ) from exc
    return user


def _other_active_superusers(user: User) -> bool:
    return (
        User.objects.filter(is_superuser=True, is_active=True)
        .exclude(pk=user.pk)
        .exists()
    )


def set_admin(identifier: str, *, revoke: bool = False) -> User:
    """Give (or with ``revoke`` remove) staff and superuser rights to a user by email."""
    return set_admin_rights(find_user(identifier), revoke=revoke)


def set_admin_rights(user: User, *, revoke: bool = False) -> User:
    """Give (or with ``revoke`` remove) staff and superuser rights."""
    if revoke and user.is_superuser and not _other_active_superusers(user):
        raise AccountError(
            f"{user.email or user.username} is the last active admin; "
            "make another one first (set_admin OTHER_EMAIL) so nobody is locked out."
        )
    if not revoke and is_purged(user):
        raise AccountError(f"User {user.pk} was purged and cannot become an admin.")
    user.is_staff = user.is_superuser = not revoke
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


# Terms
# ------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")


def first_heading(markdown: str) -> str | None:
    """Return the text of the first Markdown heading (ATX ``# x`` or setext), if any."""
    lines = markdown.splitlines()
    in_fence = False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        match = _ATX_HEADING.match(line)
        if match:
            return match.group(1).strip()
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and _SETEXT_UNDERLINE.match(following):
            return line.strip()
    return None


def import_terms(
    slug: str,
    version: str,
    text: str,
    *,
    name: str | None = None,
    active_from: datetime | None = None,
    required: bool = True,
) -> Terms:
    """Store a new version of the terms ``slug``; the name defaults to the first heading."""
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,100}", slug or ""):
        raise TermsError(
            f"{slug!r} is not a valid slug; use up to 100 letters, digits, - and _."
        )
    version = (version or "").strip()
    if not version or len(version) > 50:
        raise TermsError(
            "The version must be 1 to 50 characters, such as 2 or 2027-01."
        )
    if not text.strip():
        raise TermsError("The terms text is empty; give a Markdown file with content.")
    name = (name or "").strip() or first_heading(text)
    if not name:
        raise TermsError(
            "The text has no Markdown heading to take the name from; "
            "add '# Title' at the top or pass --name."
        )
    if Terms.objects.filter(slug=slug, version=version).exists():
        raise TermsError(
            f"Terms {slug} version {version} exist already; "
            "import the changed text as a new version."
        )
    try:
        with transaction.atomic():
            return Terms.objects.create(
                slug=slug,
                version=version,
                name=name[:200],
                text=text,
                required=required,
                active_from=active_from or timezone.now(),
            )
    except IntegrityError as exc:
        raise TermsError(
            f"Terms {slug} version {version} were imported at the same moment."
        ) from exc


def current_terms(now: datetime | None = None) -> list[Terms]:
    """Return, per slug, the newest version whose ``active_from`` has passed."""
    now = now or timezone.now()
    latest: dict[str, Terms] = {}
    for terms in Terms.objects.filter(active_from__lte=now).order_by(
        "slug", "-active_from", "-id"
    ):
        latest.setdefault(terms.slug, terms)
    return list(latest.values())


def terms_required_for(user: User, now: datetime | None = None) -> list[Terms]:
    """Return the current required terms ``user`` has not accepted yet."""
    required = [t for t in current_terms(now) if t.required]
    if not required:
        return []
    accepted = set(
        TermsAcceptance.objects.filter(user=user, terms__in=required).values_list(
            "terms_id", flat=True
        )
    )
    return [t for t in required if t.pk not in accepted]


def terms_as_dict(terms: Terms) -> dict:
    return {
        "id": terms.pk,
        "slug": terms.slug,
        "version": terms.version,
        "name": terms.name,
        "text": terms.text,
        "active_from": terms.active_from.isoformat(),
    }


@transaction.atomic
def accept_terms(user: User, terms_ids: Iterable[int]) -> list[TermsAcceptance]:
    """Record that ``user`` accepts the given current terms; unknown or outdated ids fail."""
    try:
        wanted = {int(pk) for pk in terms_ids}
    except (TypeError, ValueError) as exc:
        raise TermsError("Terms ids must be integers.") from exc
    if not wanted:
        raise TermsError("No terms given to accept.")
    current = {t.pk: t for t in current_terms()}
    unknown = sorted(wanted - set(current))
    if unknown:
        raise TermsError(
            f"Terms {', '.join(map(str, unknown))} are not current terms; "
            "accept the versions you were sent."
        )
    now = timezone.now()
    acceptances = []
    for pk in sorted(wanted):
        acceptance, _ = TermsAcceptance.objects.get_or_create(
            user=user, terms=current[pk], defaults={"accepted_at": now}
        )
        acceptances.append(acceptance)
    return acceptances


def pending_terms_for(user_id: int) -> list[dict]:
    """Return, as frames carry them, the terms user ``user_id`` still has to accept."""
    user = User.objects.get(pk=user_id)
    return [terms_as_dict(t) for t in terms_required_for(user)]


def accept_terms_for(user_id: int, terms_ids: Iterable[int]) -> list[dict]:
    """Record an acceptance for user ``user_id``; return the terms still pending."""
    user = User.objects.get(pk=user_id)
    accept_terms(user, terms_ids)
    return [terms_as_dict(t) for t in terms_required_for(user)]


# Purging (the right to be forgotten)
# ------------------------------------------------------------------------------

# Rows that point at a user with SET_NULL are content others still see: they stay,
# without an author ("deleted user"). These get a name of their own in reports.
SHARED_CONTENT = {
    "connections.chatmessage": "messages anonymised",
}
SINGULAR = {"messages anonymised": "message anonymised"}
# Rows kept under the anonymised account, as in any audit trail.
KEPT_UNDER_ACCOUNT = {
    "admin.logentry": "admin log entries kept",
}
SINGULAR |= {
    "admin log entries kept": "admin log entry kept",
    "avatar files deleted": "avatar file deleted",
    "accounts anonymised": "account anonymised",
}


def describe_user(user: User) -> str:
    parts = [user.username]
    if user.email and user.email != user.username:
        parts.append(f"<{user.email}>")
    if user.world_id:
        parts.append(f"(world {user.world_id}, uid {user.token_id})")
    return f"{user.pk} " + " ".join(parts)


def anonymise_user(user: User, now: datetime | None = None) -> None:
    """Turn ``user`` into a tombstone: no personal data, no way to sign in or connect.

    The row stays (content others see keeps its author, now anonymous) together with
    its world and token id, so the token the attendee used is recognised and refused.
    """
    now = now or timezone.now()
    if user.avatar:
        name, storage = user.avatar.name, user.avatar.storage
        # Files are not transactional: delete only once the purge is committed.
        transaction.on_commit(lambda: storage.delete(name))
    user.username = f"deleted-{user.pk}"
    user.email = f"{user.pk}@deleted"
    user.first_name = user.last_name = user.display_name = ""
    user.set_unusable_password()
    user.is_active = user.is_staff = user.is_superuser = False
    user.traits = []
    user.profile = {}
    user.avatar = ""
    user.deleted_at = now
    user.purged_at = now
    user.save()
    user.groups.clear()
    user.user_permissions.clear()


def purge_user(user: User, *, dry_run: bool = False) -> PurgeReport:
    """Forget ``user``: delete their private data, anonymise what others still see and
    the account itself. One transaction; with ``dry_run`` only count.

    What happens to each kind of row pointing at the user is what its foreign key's
    ``on_delete`` says (read by ``apps.core.deletion``), as if the user were deleted,
    except that the account stays as a tombstone and keeps the audit trail.
    """
    _refuse_if_purged(user)
    if user.is_superuser and user.is_active and not _other_active_superusers(user):
        raise AccountError(
            f"{user.username} is the last active admin; "
            "make another one first (set_admin OTHER_EMAIL)."
        )
    report = PurgeReport(
        dry_run=dry_run,
        label=describe_user(user),
        singular=dict(SINGULAR),
        empty="nothing besides the account",
    )
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        _refuse_if_purged(user)  # a concurrent purge may have won the lock
        lines, deletions, unlinks = [], [], []
        for relation, action in deletion.dependants(User):
            if relation.hidden:  # many-to-many links: anonymise_user clears them
                continue
            model = relation.related_model
            field_name = relation.field.name
            rows = model._default_manager.filter(**{field_name: user})
            label = model._meta.label_lower
            plural = str(model._meta.verbose_name_plural).lower()
            singular = str(model._meta.verbose_name).lower()
            for verb in ("deleted", "anonymised", "kept"):
                report.singular[f"{plural} {verb}"] = f"{singular} {verb}"
            count = rows.count()
            if label in KEPT_UNDER_ACCOUNT:
                kept = (KEPT_UNDER_ACCOUNT[label], count)
                lines.append((*kept, "kept, under the anonymised account"))
            elif action.kind == deletion.SET:
                what = SHARED_CONTENT.get(label, f"{plural} anonymised")
                lines.append((what, count, "kept, author removed"))
                unlinks.append((rows, field_name, action.value))
            elif action.kind == deletion.CASCADE:
                lines.append((f"{plural} deleted", count, "deleted"))
                deletions.append(rows)
            else:
                lines.append(
                    (f"{plural} kept", count, "kept, under the anonymised account")
                )
        lines.append(("avatar files deleted", 1 if user.avatar else 0, "deleted"))
        lines.append(("accounts anonymised", 1, "anonymised"))
        # Shared content first: it is what the person asking will look for.
        shared = set(SHARED_CONTENT.values())
        lines.sort(key=lambda line: line[0] not in shared)
        for what, count, action_text in lines:
            report.add("user", what, count, action_text)
        if dry_run:
            return report
        for rows, field_name, value in unlinks:
            rows.update(**{field_name: value() if callable(value) else value})
        for rows in deletions:
            rows.delete()
        anonymise_user(user)
    return report


def _refuse_if_purged(user: User) -> None:
    if is_purged(user):
        raise AccountError(
            f"User {user.pk} was already purged on {user.purged_at:%Y-%m-%d %H:%M}."
        )


def is_purged(user: User) -> bool:
    """Whether ``user`` was anonymised by a purge (soft deletion alone is not enough)."""
    return user.purged_at is not None


def purge_users(
    report: PurgeReport,
    *,
    dry_run: bool,
    batch_size: int,
    on_batch: deletion.OnBatch | None = None,
    skip_deleted_worlds: bool = False,
) -> None:
    """Purge the soft-deleted users into ``report``'s ``users`` section.

    An attendee's row is what refuses its token (world + uid): deleting it would let
    the same token create a fresh account, so attendees always become tombstones
    (``purge_user``); so do users with content others still see (rows pointing at
    them with SET_NULL, such as chat messages). Only other operators are deleted
    outright, in batches. Accounts purged before are final and left alone.
    ``skip_deleted_worlds`` leaves attendees of soft-deleted worlds to the purge of
    their world.
    """
    soft_deleted = User.objects.filter(deleted_at__isnull=False, purged_at__isnull=True)
    if skip_deleted_worlds:
        soft_deleted = soft_deleted.exclude(world__deleted_at__isnull=False)
    has_content = Q()
    for relation, action in deletion.dependants(User):
        if action.kind == deletion.SET and not relation.hidden:
            rows = relation.related_model._base_manager.filter(
                **{relation.field.name: OuterRef("pk")}
            )
            has_content |= Q(Exists(rows))
    deletable = soft_deleted.filter(world__isnull=True)
    if has_content:
        deletable = deletable.exclude(has_content)
    to_anonymise = soft_deleted.exclude(pk__in=deletable.values("pk"))
    if dry_run:
        report.add("users", "users deleted", deletable.count())
        report.add("users", "users anonymised", to_anonymise.count())
        return
    done = deletion.delete_in_batches(deletable, batch_size, on_batch)
    report.add("users", "users deleted", done.get(User._meta.label, 0))
    anonymised = 0
    skipped: set[int] = set()
    while True:
        users = list(to_anonymise.exclude(pk__in=skipped).order_by("pk")[:batch_size])
        if not users:
            break
        for user in users:
            try:
                purge_user(user)
            except AccountError as exc:
                skipped.add(user.pk)
                report.skipped.append(f"user {user.pk}: {exc}")
            else:
                anonymised += 1
        if on_batch:
            on_batch(User._meta.label, len(users))
    report.add("users", "users anonymised", anonymised)
