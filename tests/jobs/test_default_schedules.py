"""Default schedules, installed idempotently after every migrate."""

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from apps.jobs import services
from apps.jobs.models import DefaultSchedule
from apps.jobs.registry import REGISTRY
from tests.conftest import database_url
from tests.helpers import call, manage


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
def test_an_operators_change_is_kept_and_a_changed_setting_is_only_noted(
    default_jobs, settings
):
    # Until issue 16, backup() followed BACKUP_SCHEDULE at every migrate and an
    # operator's change was silently undone; now the setting seeds it once.
    never_installed()
    settings.BACKUP_SCHEDULE = "@daily"
    services.install_default_schedules()
    services.schedule("0 5 * * 6", "purge")
    services.schedule("0 4 * * *", "backup")  # the operator's, setting unchanged
    assert services.install_default_schedules() == []
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert schedules()["purge()"] == ("0 5 * * 6", True)
    assert schedules()["backup()"] == ("0 4 * * *", True)
    assert services.schedule_notes() == []  # the setting did not change: no nagging

    settings.BACKUP_SCHEDULE = "15 2 * * *"
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert schedules()["backup()"] == ("0 4 * * *", True)  # the schedule won
    note = (
        "note: BACKUP_SCHEDULE is 15 2 * * * but backup() is scheduled at 0 4 * * *; "
        'run `jobs schedule "15 2 * * *" backup` to apply it.'
    )
    assert note in call("jobs", "scheduled")
    call_command("jobs", "schedule", "15 2 * * *", "backup", stdout=StringIO())
    assert "note:" not in call("jobs", "scheduled")
    assert schedules()["backup()"] == ("15 2 * * *", True)

    settings.BACKUP_SCHEDULE = "none"
    assert services.install_default_schedules() == []
    assert schedules()["backup()"] == ("15 2 * * *", True)
    assert services.schedule_notes() == [
        "BACKUP_SCHEDULE is none but backup() is scheduled at 15 2 * * *; "
        "run `jobs unschedule backup` to apply it."
    ]
    call_command("jobs", "unschedule", "backup", stdout=StringIO())
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert "backup()" not in schedules()
    assert services.schedule_notes() == []


@pytest.mark.django_db
def test_an_unscheduled_backup_stays_away_and_a_new_setting_says_so(
    default_jobs, settings
):
    never_installed()
    settings.BACKUP_SCHEDULE = "@daily"
    call_command("migrate", verbosity=0, stdout=StringIO())
    call_command("jobs", "unschedule", "backup", stdout=StringIO())
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert "backup()" not in schedules()
    assert "note:" not in call("jobs", "scheduled")

    settings.BACKUP_SCHEDULE = "30 4 * * *"
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert "backup()" not in schedules()
    assert (
        "note: BACKUP_SCHEDULE is 30 4 * * * but backup() is not scheduled; "
        'run `jobs schedule "30 4 * * *" backup` to apply it.'
    ) in call("jobs", "scheduled")
    err = StringIO()
    call_command("jobs", "scheduled", "--json", stdout=StringIO(), stderr=err)
    assert "BACKUP_SCHEDULE is 30 4 * * *" in err.getvalue()


@pytest.mark.django_db
def test_a_setting_that_was_none_seeds_the_backup_when_it_is_set(
    default_jobs, settings
):
    never_installed()
    settings.BACKUP_SCHEDULE = "none"
    services.install_default_schedules()
    assert "backup()" not in schedules()
    settings.BACKUP_SCHEDULE = "15 2 * * *"
    assert services.install_default_schedules() == ["scheduled backup() at 15 2 * * *"]
    settings.BACKUP_SCHEDULE = "@daily"
    assert services.install_default_schedules() == []
    assert schedules()["backup()"] == ("15 2 * * *", True)


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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_operators_schedules_survive_a_restart(default_jobs, base_env):
    # A restart is a new process that runs migrate (the container's start script).
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "BACKUP_SCHEDULE": "@daily",
    }
    never_installed()
    started = manage(env, "migrate", "--noinput")
    assert started.returncode == 0, started.stderr
    assert schedules()["backup()"] == ("0 0 * * *", True)
    services.schedule("0 5 * * 6", "purge")
    services.unschedule("backup")

    restarted = manage({**env, "BACKUP_SCHEDULE": "15 2 * * *"}, "migrate", "--noinput")
    assert restarted.returncode == 0, restarted.stderr
    assert schedules() == {
        "purge()": ("0 5 * * 6", True),
        "search-index()": ("30 1 * * *", True),
    }
    listed = manage({**env, "BACKUP_SCHEDULE": "15 2 * * *"}, "jobs", "scheduled")
    assert (
        "note: BACKUP_SCHEDULE is 15 2 * * * but backup() is not scheduled; "
        'run `jobs schedule "15 2 * * *" backup` to apply it.'
    ) in listed.stdout
