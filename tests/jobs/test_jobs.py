import json

import pytest
from django.core.management import CommandError
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.jobs.models import JobRun
from tests.helpers import call


@pytest.fixture
def no_schedules(db):
    PeriodicTask.objects.all().delete()
    CrontabSchedule.objects.all().delete()


# list / run
# ------------------------------------------------------------------------------


def test_list_names_sorted_with_descriptions():
    lines = call("jobs", "list").splitlines()
    assert lines[0].split() == ["job", "description"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(names)
    assert "log-test" in names and "error-test" in names
    assert any(
        line.startswith("error-test") and "Fail on purpose" in line for line in lines
    )


def test_list_json():
    data = json.loads(call("jobs", "list", "--json"))
    assert {"name": "log-test", "task": "stagehand.log-test"}.items() <= data[
        [d["name"] for d in data].index("log-test")
    ].items()


@pytest.mark.django_db
def test_run_in_the_shell_records_the_run_with_its_parameters(temp_job):
    temp_job("echo")
    output = call("jobs", "run", "echo", "a", "k=v=w", "n=3")
    assert "echo ['a'] {'k': 'v=w', 'n': 3}" in output
    assert '✔ Job echo("a", k="v=w", n=3) done in' in output
    run = JobRun.objects.get()
    assert run.job == "echo"
    assert run.args == ["a"] and run.kwargs == {"k": "v=w", "n": 3}
    assert run.trigger == "shell" and run.outcome == "success"
    assert run.started_at is not None and run.duration is not None
    assert run.error == ""


@pytest.mark.django_db
def test_a_failing_job_is_an_error_and_recorded_with_its_traceback():
    with pytest.raises(CommandError, match=r"error-test\(\) failed .*DeliberateError"):
        call("jobs", "run", "error-test")
    run = JobRun.objects.get()
    assert run.outcome == "failure"
    assert "Traceback" in run.error and "this failure is deliberate" in run.error


@pytest.mark.django_db
def test_unknown_job_names_the_closest_known_jobs():
    with pytest.raises(
        CommandError, match="No job named 'log-tst'; did you mean log-test"
    ):
        call("jobs", "run", "log-tst")
    with pytest.raises(CommandError, match="`jobs list` shows the"):
        call("jobs", "run", "zzzzzz")
    assert not JobRun.objects.exists()


@pytest.mark.django_db
def test_run_d_without_a_broker_says_celery_broker_url_is_needed(settings):
    settings.STAGEHAND_HAS_BROKER = False
    with pytest.raises(CommandError, match="needs a broker: set CELERY_BROKER_URL"):
        call("jobs", "run", "-d", "log-test")
    assert not JobRun.objects.exists()


# schedule / unschedule / scheduled
# ------------------------------------------------------------------------------


def test_schedule_creates_a_periodic_task_in_the_configured_time_zone(
    no_schedules, params_job, settings
):
    settings.CELERY_TIMEZONE = "Europe/Paris"
    output = call("jobs", "schedule", "0 * * * *", "params-test", "a", "k=v=w")
    assert output.strip() == (
        '➢ Scheduled Job params-test("a", k="v=w") with the following crontab: 0 * * * *'
    )
    task = PeriodicTask.objects.get()
    assert task.task == "stagehand.params-test"
    assert json.loads(task.args) == ["a"] and json.loads(task.kwargs) == {"k": "v=w"}
    assert task.enabled
    assert str(task.crontab.timezone) == "Europe/Paris"
    assert (task.crontab.minute, task.crontab.hour) == ("0", "*")


def test_scheduling_the_same_identity_again_reschedules_it(no_schedules, params_job):
    call("jobs", "schedule", "0 * * * *", "params-test", "k=1")
    output = call("jobs", "schedule", "@daily", "params-test", "k=1")
    assert "with the following crontab: 0 0 * * *" in output
    task = PeriodicTask.objects.get()
    assert (task.crontab.minute, task.crontab.hour) == ("0", "0")
    # The hourly crontab nobody uses any more is gone.
    assert CrontabSchedule.objects.count() == 1


def test_different_parameters_are_different_schedules(no_schedules, params_job):
    call("jobs", "schedule", "@hourly", "params-test")
    call("jobs", "schedule", "@hourly", "params-test", "k=1")
    call("jobs", "schedule", "@hourly", "params-test", "k=2")
    call("jobs", "schedule", "@hourly", "params-test", "1")
    assert PeriodicTask.objects.count() == 4
    # Same parameters in another order or spelling: same identity.
    call("jobs", "schedule", "@daily", "params-test", "k=1")
    assert PeriodicTask.objects.count() == 4


def test_unschedule_needs_the_same_parameters(no_schedules, params_job):
    call("jobs", "schedule", "5 4 * * 1", "params-test", "a", "k=1")
    with pytest.raises(
        CommandError, match=r'✘ No scheduled job match Job params-test\("a"\)'
    ) as info:
        call("jobs", "unschedule", "params-test", "a")
    assert info.value.returncode != 0
    with pytest.raises(CommandError, match="No scheduled job match"):
        call("jobs", "unschedule", "params-test", "a", "k=2")
    assert PeriodicTask.objects.count() == 1
    output = call("jobs", "unschedule", "params-test", "a", "k=1")
    assert output.strip() == (
        '➢ Unscheduled Job params-test("a", k=1) with the following crontab: 5 4 * * 1'
    )
    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.exists()


def test_unschedule_dry_run_names_the_schedule_and_keeps_it(no_schedules, params_job):
    call("jobs", "schedule", "5 4 * * 1", "params-test", "a", "k=1")
    output = call("jobs", "unschedule", "params-test", "a", "k=1", "--dry-run")
    assert output.splitlines() == [
        'Would unschedule Job params-test("a", k=1) with the following crontab: '
        "5 4 * * 1",
        "Dry run: nothing was changed.",
    ]
    assert PeriodicTask.objects.count() == CrontabSchedule.objects.count() == 1
    with pytest.raises(CommandError, match="No scheduled job match") as info:
        call("jobs", "unschedule", "params-test", "a", "--dry-run")
    assert info.value.returncode == 2


@pytest.mark.parametrize(
    "cron",
    [
        "61 * * * *",
        "* * * *",
        "* * * * * *",
        "@sometimes",
        "a b c d e",
        "0 25 * * *",
        "",
    ],
)
def test_bad_crons_are_errors_and_write_nothing(no_schedules, cron):
    with pytest.raises(CommandError, match="Invalid crontab"):
        call("jobs", "schedule", cron, "log-test")
    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.exists()


def test_scheduling_an_unknown_job_writes_nothing(no_schedules):
    with pytest.raises(CommandError, match="No job named 'nope'"):
        call("jobs", "schedule", "@daily", "nope")
    assert not PeriodicTask.objects.exists()


@pytest.mark.parametrize(
    ("alias", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
    ],
)
def test_cron_aliases(no_schedules, alias, cron):
    assert f"crontab: {cron}" in call("jobs", "schedule", alias, "log-test")


@pytest.mark.parametrize(
    ("day_of_week", "stored"),
    [("7", "0"), ("0", "0"), ("sun", "sun"), ("5-7", "0,5,6"), ("1,7", "0,1")],
)
def test_day_of_week_7_is_sunday_as_in_cron(no_schedules, day_of_week, stored):
    output = call("jobs", "schedule", f"0 0 * * {day_of_week}", "log-test")
    assert output.strip().endswith(f"crontab: 0 0 * * {stored}")
    assert PeriodicTask.objects.get().crontab.day_of_week == stored


@pytest.mark.parametrize("day_of_week", ["8", "0-8", "7-9", "-1"])
def test_days_of_week_beyond_7_stay_errors(no_schedules, day_of_week):
    with pytest.raises(CommandError, match="Invalid crontab"):
        call("jobs", "schedule", f"0 0 * * {day_of_week}", "log-test")
    assert not PeriodicTask.objects.exists()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            ["nosuch=1"],
            r"log-test\(nosuch=1\) cannot run: got an unexpected keyword argument "
            r"'nosuch'; log-test takes \(message: str = 'log-test'\)",
        ),
        (["message=3"], r"message=3 is not str; log-test takes \(message: str"),
        (["a", "b"], r"too many positional arguments; log-test takes \(message"),
        (["a", "message=b"], r"multiple values for argument 'message'"),
    ],
)
def test_schedule_refuses_parameters_the_job_cannot_take(no_schedules, params, match):
    with pytest.raises(CommandError, match=match):
        call("jobs", "schedule", "@daily", "log-test", *params)
    assert not PeriodicTask.objects.exists() and not CrontabSchedule.objects.exists()


def test_schedule_checks_annotated_types(no_schedules):
    with pytest.raises(
        CommandError,
        match=r"interval_ms=true is not int \| str; connections-drop takes "
        r"\(\*labels: str, interval_ms: int \| str = 0, spread_ms: int \| str \| None = "
        r"None\)",
    ):
        call("jobs", "schedule", "@daily", "connections-drop", "interval_ms=true")
    with pytest.raises(CommandError, match=r"labels=1 is not str"):
        call("jobs", "schedule", "@daily", "connections-drop", "1")
    with pytest.raises(CommandError, match=r"error-test takes none"):
        call("jobs", "schedule", "@daily", "error-test", "x=1")
    assert not PeriodicTask.objects.exists()
    output = call(
        "jobs", "schedule", "@daily", "connections-drop", "abc.*", "interval_ms=50"
    )
    assert 'connections-drop("abc.*", interval_ms=50)' in output
    assert "log-test(message=" in call(
        "jobs", "schedule", "@daily", "log-test", 'message="3"'
    )


def test_scheduled_lists_description_label_and_cron(no_schedules, params_job):
    assert call("jobs", "scheduled").strip() == "# No scheduled jobs"
    call("jobs", "schedule", "0 3 * * *", "params-test", "k=1")
    call("jobs", "schedule", "@weekly", "error-test")
    lines = call("jobs", "scheduled").splitlines()
    assert lines == [
        "Fail on purpose, to check that job errors are reported: error-test() ↦ 0 0 * * 0",
        "Test job params-test: params-test(k=1) ↦ 0 3 * * *",
    ]
    data = json.loads(call("jobs", "scheduled", "--json"))
    assert [(d["job"], d["kwargs"], d["cron"]) for d in data] == [
        ("error-test", {}, "0 0 * * 0"),
        ("params-test", {"k": 1}, "0 3 * * *"),
    ]


# history
# ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_history_shows_every_run_newest_first():
    call("jobs", "run", "log-test")
    with pytest.raises(CommandError):
        call("jobs", "run", "error-test")
    call("jobs", "run", "log-test", "message=x")
    # A run the workers have not picked up yet.
    JobRun.objects.create(
        job="log-test", trigger="api", outcome="queued", task_id="t-1"
    )
    lines = call("jobs", "history").splitlines()
    assert lines[0].split() == [
        "id",
        "job",
        "trigger",
        "started",
        "duration",
        "outcome",
        "task",
        "error",
    ]
    assert [line.split()[1] for line in lines[1:]] == [
        "log-test()",
        'log-test(message="x")',
        "error-test()",
        "log-test()",
    ]
    assert "DeliberateError: error-test: this failure is deliberate" in lines[3]
    assert "queued" in lines[1] and "t-1" in lines[1]

    only = call("jobs", "history", "error-test").splitlines()
    assert len(only) == 2 and "failure" in only[1]
    assert len(call("jobs", "history", "--limit", "2").splitlines()) == 3

    data = json.loads(call("jobs", "history", "--json", "--limit", "1"))
    assert data[0]["job"] == "log-test" and data[0]["outcome"] == "queued"
    assert data[0]["trigger"] == "api"


@pytest.mark.django_db
def test_history_of_an_unknown_job_suggests_names():
    assert call("jobs", "history").strip() == "# No job runs recorded"
    with pytest.raises(CommandError, match="did you mean log-test"):
        call("jobs", "history", "log-tes")
    with pytest.raises(CommandError, match="--limit"):
        call("jobs", "history", "--limit", "0")
