"""Default schedules, installed idempotently after every migrate."""

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from apps.jobs import services
from apps.jobs.models import DefaultSchedule


def schedules() -> dict[str, tuple[str, bool]]:
    return {row["label"]: (row["cron"], row["enabled"]) for row in services.scheduled()}


@pytest.fixture
def default_jobs(temp_job):
    for name in ("purge", "search-index", "backup"):
        temp_job(name)


def never_installed() -> None:
    """A database on which no default has been installed yet."""
    PeriodicTask.objects.all().delete()
    DefaultSchedule.objects.all().delete()


@pytest.mark.django_db
def test_migrate_installs_the_defaults_once(default_jobs, settings):
    settings.BACKUP_SCHEDULE = "@daily"
    never_installed()
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert schedules() == {
        "backup()": ("0 0 * * *", True),
        "purge()": ("0 3 * * *", True),
        "search-index()": ("30 1 * * *", True),
    }
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert PeriodicTask.objects.count() == 3


@pytest.mark.django_db
def test_an_operators_change_is_kept_and_backup_follows_its_setting(
    default_jobs, settings
):
    never_installed()
    settings.BACKUP_SCHEDULE = "@daily"
    services.install_default_schedules()
    services.schedule("0 5 * * 6", "purge")
    settings.BACKUP_SCHEDULE = "15 2 * * *"
    assert services.install_default_schedules() == ["scheduled backup() at 15 2 * * *"]
    assert schedules()["purge()"] == ("0 5 * * 6", True)
    assert schedules()["backup()"] == ("15 2 * * *", True)

    settings.BACKUP_SCHEDULE = "none"
    assert services.install_default_schedules() == [
        "disabled backup() (BACKUP_SCHEDULE=none)"
    ]
    assert schedules()["backup()"] == ("15 2 * * *", False)
    assert services.install_default_schedules() == []


@pytest.mark.django_db
def test_none_installs_no_backup_and_a_bad_setting_is_loud(default_jobs, settings):
    never_installed()
    settings.BACKUP_SCHEDULE = "none"
    services.install_default_schedules()
    assert "backup()" not in schedules()
    settings.BACKUP_SCHEDULE = "every day"
    with pytest.raises(ImproperlyConfigured, match="BACKUP_SCHEDULE: Invalid crontab"):
        services.install_default_schedules()


@pytest.mark.django_db
def test_jobs_that_do_not_exist_get_no_schedule(settings):
    from apps.jobs.registry import REGISTRY

    never_installed()
    services.install_default_schedules()
    installed = {row["job"] for row in services.scheduled()}
    assert installed <= set(REGISTRY)
    assert installed == {"purge", "search-index", "backup"} & set(REGISTRY)


@pytest.mark.django_db
def test_an_unscheduled_default_stays_away(default_jobs, settings):
    settings.BACKUP_SCHEDULE = "none"
    never_installed()
    services.install_default_schedules()
    assert services.unschedule("purge") is not None
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert schedules() == {"search-index()": ("30 1 * * *", True)}
    # Scheduling it again is how an operator gets it back.
    services.schedule("0 3 * * *", "purge")
    assert services.install_default_schedules() == []
    assert schedules()["purge()"] == ("0 3 * * *", True)


@pytest.mark.django_db
def test_a_job_scheduled_before_counts_as_installed(default_jobs, settings):
    # A database from before DefaultSchedule: its schedules were defaults or the
    # operator's, and from now on they are the operator's either way.
    settings.BACKUP_SCHEDULE = "none"
    never_installed()
    services.schedule("0 5 * * 6", "purge")
    assert services.install_default_schedules() == [
        "scheduled search-index() at 30 1 * * *"
    ]
    assert set(DefaultSchedule.objects.values_list("name", flat=True)) == {
        "purge",
        "search-index",
    }
    services.unschedule("purge")
    assert services.install_default_schedules() == []
    assert "purge()" not in schedules()
