"""The errors of the jobs services: each message says what to do."""

from __future__ import annotations


class JobError(Exception):
    """A job request that cannot be carried out; the message says what to do."""


class UnknownJob(JobError):
    pass


class InvalidCron(JobError):
    pass


class NoBroker(JobError):
    pass


class InvalidParams(JobError):
    pass
