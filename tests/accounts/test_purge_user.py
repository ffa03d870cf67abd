import os
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.core.files.base import ContentFile
from django.core.management import CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import Terms, TermsAcceptance, User
from apps.connections.models import ChatMessage
from apps.search import services as search
from apps.worlds import services as worlds
from tests.helpers import call, documented, run_json


def purge(*args, answer: str = "") -> str:
    return call("purge_user", *args, stdin=answer)


def snapshot():
    users = list(User.objects.order_by("pk").values())
    messages = list(ChatMessage.objects.order_by("pk").values())
    return users, messages, TermsAcceptance.objects.count(), Token.objects.count()


@pytest.fixture
def cleo_extras(expo, media):
    """Cleo accepted the terms and uploaded an avatar."""
    terms = services.import_terms(
        "tos", "1", "# Terms\n", active_from=timezone.now() - timedelta(days=1)
    )
    services.accept_terms(expo.cleo, [terms.pk])
    expo.cleo.avatar.save("cleo.png", ContentFile(b"\x89PNG fake"), save=True)
    return expo


@pytest.mark.django_db
def test_dry_run_lists_counts_and_changes_nothing(cleo_extras):
    expo = cleo_extras
    before = snapshot()
    output = purge("--world", "expo", "--uid", "cleo-uid", "--dry-run")
    assert snapshot() == before
    with open(expo.cleo.avatar.path, "rb") as avatar:
        assert avatar.read() == b"\x89PNG fake"
    lines = {line.split("  ")[0]: line.split() for line in output.splitlines()}
    assert lines["messages anonymised"][2] == "3"
    assert lines["terms acceptances deleted"][3] == "1"
    assert lines["avatar files deleted"][3] == "1"
    assert (
        "Dry run: nothing changed. Purging would mean 3 messages anonymised" in output
    )


@pytest.mark.django_db(transaction=True)
def test_purge_keeps_others_view_anonymises_and_refuses_the_token(cleo_extras):
    expo = cleo_extras
    avatar_path = expo.cleo.avatar.path
    search.index(["attendees"])
    hits = search.query("Cleo", models=["attendees"])
    assert [h.id for h in hits] == [str(expo.cleo.pk)]
    output = purge("--world", "expo", "--uid", "cleo-uid", "--noinput")
    cleo = User.objects.get(pk=expo.cleo.pk)
    assert f"Purged user {cleo.pk} " in output
    assert "(world expo, uid cleo-uid)" in output
    assert (
        "3 messages anonymised, 1 terms acceptance deleted, 1 avatar file deleted"
        in output
    )

    # The account is a tombstone.
    assert cleo.email == f"{cleo.pk}@deleted"
    assert cleo.username == f"deleted-{cleo.pk}"
    assert cleo.display_name == cleo.first_name == cleo.last_name == ""
    assert cleo.profile == {} and cleo.traits == [] and not cleo.avatar
    assert not cleo.has_usable_password() and not cleo.is_active
    assert cleo.deleted_at is not None
    assert not TermsAcceptance.objects.filter(user=cleo).exists()
    assert Terms.objects.count() == 1
    # Others still see the whole conversation; Cleo's lines have no author any more.
    texts = list(
        ChatMessage.objects.filter(room=expo.room).values_list("text", "sender")
    )
    assert texts == [
        ("hello", None),
        ("anyone here?", None),
        ("bye", None),
        ("hi Cleo", expo.dan.pk),
    ]
    # Nobody finds her by name any more.
    assert search.query("Cleo", models=["attendees"]) == []
    # The private file went once the transaction committed.
    assert not os.path.exists(avatar_path)
    # Her token is refused and does not bring the account back; Dan's still works.
    claims = worlds.verify_token(expo.world, expo.cleo_token)
    with pytest.raises(worlds.TokenError) as refused:
        worlds.get_or_create_attendee(expo.world, claims)
    assert refused.value.code == "auth.invalid_token"
    assert User.objects.filter(world=expo.world, token_id="cleo-uid").count() == 1
    dan_claims = worlds.verify_token(expo.world, expo.dan_token)
    assert worlds.get_or_create_attendee(expo.world, dan_claims) == expo.dan

    with pytest.raises(CommandError, match="already purged"):
        purge("--world", "expo", "--uid", "cleo-uid", "--noinput")


@pytest.mark.django_db
def test_purge_asks_for_confirmation(expo):
    before = snapshot()
    with pytest.raises(CommandError, match="Not confirmed; nothing was purged"):
        purge("--world", "expo", "--uid", "cleo-uid", answer="n\n")
    assert snapshot() == before
    output = purge("--world", "expo", "--uid", "cleo-uid", answer="yes\n")
    assert "Purge this user? This cannot be undone. [y/N]" in output
    assert User.objects.get(pk=expo.cleo.pk).deleted_at is not None


@pytest.mark.django_db
def test_purge_an_operator_by_email_deletes_api_tokens(alice, bob, client):
    Token.objects.create(user=bob)
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    assert client.get("/admin/").status_code == 200
    output = purge("BOB@example.org", "--noinput")
    # The open admin session ends with the account.
    assert client.get("/admin/").status_code == 302
    assert "1 token deleted" in output
    assert not Token.objects.filter(user=bob).exists()
    bob.refresh_from_db()
    assert not bob.is_active and bob.email == f"{bob.pk}@deleted"
    assert authenticate(username="bob", password="tulip-river-91") is None


@pytest.mark.django_db
def test_purge_is_one_transaction(expo, monkeypatch):
    def boom(user, now=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "anonymise_user", boom)
    before = snapshot()
    with pytest.raises(RuntimeError, match="disk on fire"):
        purge("--world", "expo", "--uid", "cleo-uid", "--noinput")
    assert snapshot() == before


@pytest.mark.django_db
def test_purge_user_error_paths(alice, expo):
    with pytest.raises(CommandError, match="No user with username or email 'ghost'"):
        purge("ghost", "--noinput")
    with pytest.raises(
        CommandError, match="No attendee with uid 'nope' in world 'expo'"
    ):
        purge("--world", "expo", "--uid", "nope", "--noinput")
    with pytest.raises(CommandError, match="both --world and --uid"):
        purge("--world", "expo", "--noinput")
    with pytest.raises(CommandError, match="not both"):
        purge("alice", "--world", "expo", "--uid", "cleo-uid", "--noinput")
    with pytest.raises(CommandError, match="Name the user"):
        purge("--noinput")
    with pytest.raises(CommandError, match="last active admin"):
        purge("alice", "--noinput")


@pytest.mark.django_db
def test_a_purge_racing_another_is_refused_not_repeated(expo):
    stale = User.objects.get(pk=expo.cleo.pk)  # read before the other purge commits
    services.purge_user(User.objects.get(pk=expo.cleo.pk))
    purged_at = User.objects.get(pk=expo.cleo.pk).deleted_at
    with pytest.raises(services.AccountError, match="already purged"):
        services.purge_user(stale)
    assert User.objects.get(pk=expo.cleo.pk).deleted_at == purged_at


@pytest.fixture
def cleo_by_email(expo):
    expo.cleo.email = "cleo@example.org"
    expo.cleo.save()
    return expo


@pytest.mark.django_db
def test_json_dry_run_is_the_apis_report(alice, cleo_by_email):
    before = snapshot()
    args = documented(
        "docs/accounts.md", "purge_user cleo@example.org --dry-run --json"
    )
    data, err = run_json(*args)
    assert err == ""
    assert snapshot() == before
    api = APIClient()
    api.force_authenticate(alice)
    answer = api.post(
        "/api/v1/users/purge/",
        {"user": "cleo@example.org", "dry_run": True},
        format="json",
    )
    assert data == answer.json()
    assert data["user"] == cleo_by_email.cleo.pk and data["dry_run"] is True
    items = {i["what"]: i["count"] for i in data["items"]}
    assert items["messages anonymised"] == 3


@pytest.mark.django_db
def test_json_purge_noinput(cleo_by_email):
    args = documented(
        "docs/accounts.md", "purge_user cleo@example.org --noinput --json"
    )
    data, err = run_json(*args)
    assert err == ""
    assert data["dry_run"] is False and data["user"] == cleo_by_email.cleo.pk
    assert User.objects.get(pk=cleo_by_email.cleo.pk).deleted_at is not None


@pytest.mark.django_db
def test_json_asks_on_stderr(expo):
    before = snapshot()
    with pytest.raises(CommandError, match="Not confirmed"):
        run_json(
            "purge_user", "--world", "expo", "--uid", "cleo-uid", "--json", stdin="n\n"
        )
    assert snapshot() == before
    data, err = run_json(
        "purge_user", "--world", "expo", "--uid", "cleo-uid", "--json", stdin="y\n"
    )
    assert "Purge this user? This cannot be undone. [y/N]" in err
    assert "messages" in err  # the plan, before the question
    assert data["summary"].startswith("3 messages anonymised")
    with pytest.raises(CommandError, match="already purged"):
        run_json(
            "purge_user", "--world", "expo", "--uid", "cleo-uid", "--json", "--noinput"
        )
