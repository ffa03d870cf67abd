"""Migration 0005: accounts purged before ``purged_at`` existed are marked purged."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import User

BEFORE = [("accounts", "0004_user_updated_at")]


@pytest.mark.django_db(transaction=True)
def test_earlier_tombstones_are_marked_purged_and_nothing_else():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("accounts", "User")
    when = timezone.now()
    tombstone = old.objects.create(username="deleted-x", deleted_at=when)
    old.objects.filter(pk=tombstone.pk).update(email=f"{tombstone.pk}@deleted")
    soft = old.objects.create(
        username="soft", email="soft@example.org", deleted_at=when
    )
    lookalike = old.objects.create(username="l", email="9999@deleted", deleted_at=when)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    purged = {u.pk: u.purged_at for u in User.objects.all()}
    assert purged == {tombstone.pk: when, soft.pk: None, lookalike.pk: None}
    assert services.is_purged(User.objects.get(pk=tombstone.pk))
    assert not services.is_purged(User.objects.get(pk=soft.pk))
