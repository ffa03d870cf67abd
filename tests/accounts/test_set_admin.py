import pytest
from django.core.management import CommandError

from apps.accounts.models import User
from tests.helpers import call, documented, run_json


@pytest.mark.django_db
def test_set_admin_grants_and_revokes(alice, bob):
    assert "bob@example.org is now an admin" in call("set_admin", "BOB@example.org")
    bob.refresh_from_db()
    assert bob.is_staff and bob.is_superuser
    assert "no longer an admin" in call("set_admin", "bob@example.org", "--revoke")
    bob.refresh_from_db()
    assert not bob.is_staff and not bob.is_superuser


@pytest.mark.django_db
def test_set_admin_unknown_email_is_a_clear_error(alice):
    with pytest.raises(
        CommandError, match="No user with username or email 'nobody@example.org'"
    ):
        call("set_admin", "nobody@example.org")


@pytest.mark.django_db
def test_set_admin_refuses_to_revoke_the_last_admin(alice):
    with pytest.raises(CommandError, match="last active admin"):
        call("set_admin", "alice@example.org", "--revoke")
    alice.refresh_from_db()
    assert alice.is_superuser


@pytest.mark.django_db
def test_set_admin_json_prints_the_user(alice):
    ops = User.objects.create_user("ops@example.org", "ops@example.org", "x-91-tulip")
    data, err = run_json(
        *documented("docs/accounts.md", "set_admin ops@example.org --json")
    )
    assert err == ""
    assert data == {
        "id": ops.pk,
        "email": "ops@example.org",
        "username": "ops@example.org",
        "staff": True,
        "superuser": True,
        "world": None,
        "uid": "",
    }
    data, _ = run_json("set_admin", "ops@example.org", "--revoke", "--json")
    assert (data["staff"], data["superuser"]) == (False, False)
    with pytest.raises(CommandError, match="last active admin"):
        run_json("set_admin", "alice@example.org", "--revoke", "--json")
