"""Retry policy of the Prefect tasks: a failed run is retried only when its error is transient.

A bug, an invalid brief or a refused status change fails the same way every time; retrying it
only delays the report. Throttled storage, a dropped or locked database connection and a
restarting worker are worth another try.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from infra.db import is_transient
from tasks.faults import retry_delay_s, run_logger

P = ParamSpec("P")
R = TypeVar("R")
BOOKKEEPING_ATTEMPTS = 3


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: True (go on to the task's retries) for a transient
    error, False (fail now) for any other."""
    try:
        state.result()  # a Failed state raises the task's exception
    except Exception as err:  # noqa: BLE001 - classified here, not handled
        return is_transient(err)
    return False


def retried_when_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """The same policy for the flow's own bookkeeping between tasks (short transactions that
    read or settle rows, safe to run again): a dropped or locked database connection is tried
    again after a backoff, up to BOOKKEEPING_ATTEMPTS times, instead of failing the whole run
    on one cut connection."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, BOOKKEEPING_ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if attempt == BOOKKEEPING_ATTEMPTS or not is_transient(err):
                    raise
                run_logger().warning("bookkeeping.retry fn=%s attempt=%d error=%s",
                                     fn.__name__, attempt, type(err).__name__)
                time.sleep(retry_delay_s(attempt))
        raise AssertionError("unreachable")
    return wrapper
