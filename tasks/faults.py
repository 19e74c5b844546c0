"""How a failure is told to the team, and how long a transient one is retried.

Transient errors (a Ray actor that died, S3 5xx/timeouts, a dropped database connection) are
retried with a capped exponential backoff; anything else fails the one variant it hit. The
reason a team reads never carries the worker's file paths (temp folders, checkpoint folders):
they mean nothing to the team and tell an outsider how the machine is laid out.
"""

from __future__ import annotations

import logging
import re

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from infra.db import is_transient

MAX_REASON_CHARS = 500
# Attempts of one render job (the first run included) before a transient error fails it.
MAX_RENDER_ATTEMPTS = 3
RETRY_BACKOFF_S = 2.0
RETRY_BACKOFF_CAP_S = 30.0

# An absolute POSIX path: a slash not preceded by a word character, a colon or another slash
# (so `s3://bucket/key` and `a/b` relative keys are left alone), then path characters.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.-])/(?:[\w.+@%-]+/)*([\w.+@%-]*)")


def readable_reason(error: BaseException | str) -> str:
    """One line for the team: the error's text with absolute paths cut to their file name,
    shortened to MAX_REASON_CHARS."""
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "<path>", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 1] + "…"


def retry_delay_s(retry: int, base_s: float = RETRY_BACKOFF_S,
                  cap_s: float = RETRY_BACKOFF_CAP_S) -> float:
    """Backoff before retry number `retry` (1, 2, ...): doubling from `base_s`, at most `cap_s`."""
    return min(cap_s, base_s * 2 ** max(0, retry - 1))


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task; the module logger when the same code runs
    outside one (a test, a script)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tasks")


__all__ = ["MAX_RENDER_ATTEMPTS", "is_transient", "readable_reason", "retry_delay_s", "run_logger"]
