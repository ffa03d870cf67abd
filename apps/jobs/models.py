"""What the jobs app stores: a record of every job run, and the beat lock."""

from __future__ import annotations

from django.db import models


class JobRun(models.Model):
    """One run of a job, wherever it ran: the answer to "did last night's backup run?".

    A run sent to the workers is recorded as ``queued`` when it is sent, so a run that
    never reached a worker is visible too; the worker then fills in the rest.
    """

    class Trigger(models.TextChoices):
        SHELL = "shell", "shell (jobs run)"
        WORKER = "worker", "worker (jobs run -d)"
        BEAT = "beat", "beat (schedule)"
        API = "api", "REST API"
        ADMIN = "admin", "admin site"

    class Outcome(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCESS = "success"
        FAILURE = "failure"
        # Its process died while it ran: no heartbeat (services.mark_lost_runs).
        LOST = "lost"

    job = models.CharField(max_length=100, db_index=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.RUNNING
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Written every JOB_HEARTBEAT seconds while the job runs.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    result = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    task_id = models.CharField(max_length=255, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.job} #{self.pk} ({self.outcome})"


class BeatLock(models.Model):
    """The single row a beat process must hold to send scheduled jobs.

    Claimed and renewed with a conditional UPDATE (holder is me, or the lease expired),
    so two beats never both believe they hold it; a crashed beat's lease expires and a
    standby beat takes over.
    """

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or 'free'}"


class DefaultSchedule(models.Model):
    """A default schedule that has been installed once (``install_default_schedules``).

    From then on the schedule is the operator's: unscheduled, it stays away, instead
    of coming back with the next ``migrate``.
    """

    name = models.CharField(max_length=100, primary_key=True)
    installed_at = models.DateTimeField(auto_now_add=True)
    # The default it was installed from (a crontab, or "none"): a setting changed
    # since is shown by `jobs scheduled`, not applied (docs/jobs.md).
    expression = models.CharField(max_length=100, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.name} (installed {self.installed_at:%Y-%m-%d})"
