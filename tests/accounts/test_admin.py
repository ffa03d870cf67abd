import pytest

from apps.accounts import services
from apps.accounts.models import TermsAcceptance, User
from apps.connections.models import ChatMessage


@pytest.mark.django_db
def test_admin_pages_for_users_terms_and_acceptances(client, alice, expo):
    terms = services.import_terms("tos", "1", "# Terms\n")
    services.accept_terms(expo.cleo, [terms.pk])
    client.force_login(alice)
    listing = client.get("/admin/accounts/user/", {"world__id__exact": "expo"})
    assert listing.status_code == 200
    page = listing.content.decode()
    assert expo.cleo.username in page and "alice@example.org" not in page
    assert "By world" in page
    assert client.get("/admin/accounts/terms/").status_code == 200
    acceptances = client.get("/admin/accounts/termsacceptance/")
    assert acceptances.status_code == 200 and "tos" in acceptances.content.decode()
    change = client.get(
        f"/admin/accounts/termsacceptance/{TermsAcceptance.objects.get().pk}/change/"
    )
    assert change.status_code == 200  # viewable, not editable


@pytest.mark.django_db(transaction=True)
def test_admin_purge_action_confirms_then_calls_the_service(client, alice, expo):
    client.force_login(alice)
    url = "/admin/accounts/user/"
    form = {"action": "purge_users", "_selected_action": [expo.cleo.pk]}
    confirm = client.post(url, form)
    assert confirm.status_code == 200
    assert "messages anonymised" in confirm.content.decode()
    assert User.objects.get(pk=expo.cleo.pk).deleted_at is None

    done = client.post(url, {**form, "confirmed": "yes"}, follow=True)
    assert "Purged user" in done.content.decode()
    cleo = User.objects.get(pk=expo.cleo.pk)
    assert cleo.email == f"{cleo.pk}@deleted"
    assert ChatMessage.objects.filter(sender__isnull=True).count() == 3


@pytest.mark.django_db
def test_admin_offers_no_plain_delete_of_users(client, alice, bob):
    client.force_login(alice)
    response = client.get(f"/admin/accounts/user/{bob.pk}/delete/")
    assert response.status_code == 403
    page = client.get("/admin/accounts/user/").content.decode()
    assert "delete_selected" not in page and "purge_users" in page


@pytest.mark.django_db
def test_admin_rights_actions_use_set_admin(client, alice, bob):
    client.force_login(alice)
    client.post(
        "/admin/accounts/user/", {"action": "grant_admin", "_selected_action": [bob.pk]}
    )
    bob.refresh_from_db()
    assert bob.is_superuser and bob.is_staff
    client.post(
        "/admin/accounts/user/",
        {"action": "revoke_admin", "_selected_action": [alice.pk, bob.pk]},
    )
    alice.refresh_from_db()
    bob.refresh_from_db()
    # One of them stays: revoking the last admin is refused.
    assert alice.is_superuser != bob.is_superuser


@pytest.mark.django_db
def test_accepted_terms_text_cannot_be_edited_in_the_admin(client, alice, bob):
    terms = services.import_terms("tos", "1", "# Terms\n\nOriginal.\n")
    client.force_login(alice)
    url = f"/admin/accounts/terms/{terms.pk}/change/"
    assert 'name="text"' in client.get(url).content.decode()
    services.accept_terms(bob, [terms.pk])
    page = client.get(url).content.decode()
    assert 'name="text"' not in page and "Original." in page


@pytest.mark.django_db
def test_the_purge_confirmation_counts_users_in_the_right_number(client, alice, expo):
    client.force_login(alice)
    url = "/admin/accounts/user/"
    one = client.post(
        url, {"action": "purge_users", "_selected_action": [expo.cleo.pk]}
    )
    assert 'value="Yes, purge 1 user"' in one.content.decode()
    two = client.post(
        url,
        {"action": "purge_users", "_selected_action": [expo.cleo.pk, expo.dan.pk]},
    )
    assert 'value="Yes, purge 2 users"' in two.content.decode()
