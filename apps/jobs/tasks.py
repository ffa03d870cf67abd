"""The jobs app's own jobs: checks that logging and error reporting reach the operator."""

from __future__ import annotations

import logging
import time

from .registry import job

logger = logging.getLogger("apps.jobs.log_test")


class DeliberateError(RuntimeError):
    """Raised by the error-test job, so error reporting can be checked end to end."""


@job("log-test", "Log one message at each level, to check where job logs end up.")
def log_test(message: str = "log-test") -> str:
    logger.debug("%s: debug message", message)
    logger.info("%s: info message", message)
    logger.warning("%s: warning message", message)
    logger.error("%s: error message", message)
    return f"logged {message!r} at debug, info, warning and error"


@job("error-test", "Fail on purpose, to check that job errors are reported.")
def error_test() -> None:
    raise DeliberateError("error-test: this failure is deliberate")


@job("sleep-test", "Sleep for a while, to check how runs on workers are followed.")
def sleep_test(seconds: float = 60) -> str:
    time.sleep(seconds)
    return f"slept {seconds:g} seconds"
