"""API tokens (DRF's authtoken): one per staff user, created, listed and revoked by
``manage.py api_token``. The key is shown once, when it is created."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from apps.core.validation import text_problem

from .models import User
from .services import AccountError, find_user


class TokenError(AccountError):
    """The token cannot be created or revoked; the message says what to do."""


def create_token(identifier: str) -> Token:
    """Create the API token of the staff user ``identifier`` (email or username).

    A user has at most one token: a second one is refused, with how to replace it.
    """
    user = _find(identifier)
    if not user.is_active or not user.is_staff:
        raise TokenError(
            f"{_who(user)} is not an active staff user, and the API serves only "
            f"staff; give the rights first: manage.py set_admin {_who(user)}"
        )
    try:
        with transaction.atomic():
            return Token.objects.create(user=user)
    except IntegrityError:
        raise TokenError(
            f"{_who(user)} already has an API token; to replace it, revoke it first: "
            f"manage.py api_token revoke {_who(user)}"
        ) from None


def revoke_token(identifier: str) -> User:
    """Delete the API token of ``identifier``; calls with it answer 401 from now on."""
    user = _find(identifier)
    deleted, _ = Token.objects.filter(user=user).delete()
    if not deleted:
        raise TokenError(
            f"{_who(user)} has no API token; `manage.py api_token list` shows who has."
        )
    return user


def list_tokens(identifier: str | None = None) -> list[Token]:
    """Return the API tokens (of one user, or of all), oldest first."""
    tokens = Token.objects.select_related("user").order_by("created", "user__pk")
    if identifier:
        tokens = tokens.filter(user=_find(identifier))
    return list(tokens)


def _find(identifier: str) -> User:
    # PostgreSQL refuses NUL in a query's text: a DataError otherwise.
    problem = text_problem(identifier)
    if problem:
        raise TokenError(f"The email or username {problem}.")
    return find_user(identifier)


def _who(user: User) -> str:
    return user.email or user.username
