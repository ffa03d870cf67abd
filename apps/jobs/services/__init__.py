"""Jobs: run them, send them to the workers, schedule them, and remember every run.

The ``jobs``, ``worker`` and ``cache`` commands, the admin and the REST API all call
these functions, one module per subject: ``params`` (parameters and labels), ``runs``
(running and recording), ``schedules`` (crontabs and the default schedules),
``lease`` (the beat lease), ``queues`` (workers and the broker) and ``cache``.
Callers use them through this package. Errors are ``JobError`` with a message that
says what to do.
"""

from .cache import flush_cache
from .errors import InvalidCron, InvalidParams, JobError, NoBroker, UnknownJob
from .lease import BEAT_LOCK, beat_lock_holder, hold_beat_lock, release_beat_lock
from .params import (
    call_label,
    check_params,
    lookup,
    params_problem,
    parse_params,
    parse_value,
    signature_of,
)
from .queues import (
    QueueStatus,
    broker_url,
    default_queues,
    munin_config,
    munin_field,
    munin_values,
    queue_status,
    start_worker,
)
from .runs import (
    BEAT_HEADER,
    TRIGGER_HEADER,
    Recording,
    RunOutcome,
    execute,
    history,
    recorded,
    require_broker,
    run,
    run_as_dict,
    send,
    trigger_of,
)
from .schedules import (
    CRON_ALIASES,
    Cron,
    Scheduled,
    cron_of,
    default_expression,
    find_schedule,
    install_default_schedules,
    parse_cron,
    schedule,
    schedule_notes,
    scheduled,
    unrunnable_schedules,
    unschedule,
)

__all__ = [
    "BEAT_HEADER",
    "BEAT_LOCK",
    "CRON_ALIASES",
    "Cron",
    "InvalidCron",
    "InvalidParams",
    "JobError",
    "NoBroker",
    "QueueStatus",
    "Recording",
    "RunOutcome",
    "Scheduled",
    "TRIGGER_HEADER",
    "UnknownJob",
    "beat_lock_holder",
    "broker_url",
    "call_label",
    "check_params",
    "cron_of",
    "default_expression",
    "default_queues",
    "execute",
    "find_schedule",
    "flush_cache",
    "history",
    "hold_beat_lock",
    "install_default_schedules",
    "lookup",
    "munin_config",
    "munin_field",
    "munin_values",
    "params_problem",
    "parse_cron",
    "parse_params",
    "parse_value",
    "queue_status",
    "recorded",
    "release_beat_lock",
    "require_broker",
    "run",
    "run_as_dict",
    "schedule",
    "schedule_notes",
    "scheduled",
    "send",
    "signature_of",
    "start_worker",
    "trigger_of",
    "unrunnable_schedules",
    "unschedule",
]
