import pytest
from django.contrib.auth import authenticate, get_user_model
from django.db import IntegrityError, transaction

User = get_user_model()


def test_the_custom_user_model_is_in_use():
    assert User._meta.label == "accounts.User"


@pytest.mark.django_db
def test_email_is_unique_regardless_of_case():
    User.objects.create_user("carol", "Carol@Example.org", "pw-1234567")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("carol2", "carol@example.ORG", "pw-1234567")


@pytest.mark.django_db
def test_attendees_without_email_do_not_collide():
    User.objects.create_user("attendee-1")
    User.objects.create_user("attendee-2")
    assert User.objects.filter(email="").count() == 2


@pytest.mark.django_db
def test_operators_sign_in_with_username_or_email(alice):
    assert authenticate(username="alice", password="correct horse battery") == alice
    assert (
        authenticate(username="ALICE@example.org", password="correct horse battery")
        == alice
    )
    assert authenticate(username="alice", password="wrong") is None


@pytest.mark.django_db
def test_admin_is_reachable_for_staff(client, alice):
    client.force_login(alice)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/django_celery_beat/periodictask/").status_code == 200
    assert client.get("/admin/accounts/user/").status_code == 200
