"""Retry policy of the Prefect tasks: a failed run is retried only when its error is transient.

A bug, an invalid brief or a refused status change fails the same way every time; retrying it
only delays the report. Throttled storage, a dropped or locked database connection and a
restarting worker are worth another try.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from infra.db import is_transient


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: True (go on to the task's retries) for a transient
    error, False (fail now) for any other."""
    try:
        state.result()  # a Failed state raises the task's exception
    except Exception as err:  # noqa: BLE001 - classified here, not handled
        return is_transient(err)
    return False
