"""Errors raised on purpose by the pipeline, subclassed by what the caller should do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PipelineError(Exception):
    """Base for errors raised on purpose."""


class TransientError(PipelineError):
    """Safe to retry: throttling, network, a restarting GPU worker."""


MAX_PROBLEMS_SHOWN = 100  # a hostile brief can have 100,000s of problems; answers stay small


def first_line(err: BaseException) -> str:
    """An error's text up to its first line break (not the query or traceback after it), or its
    class name when it has no text."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def validation_message(error: Mapping[str, Any]) -> str:
    """A pydantic validation error's message: our checks' own words, without the
    "Value error, " pydantic puts before a ValueError's text."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])


class BriefInvalid(PipelineError, ValueError):
    """The brief cannot be produced as written. `problems` holds the first (path, message) pairs
    (at most MAX_PROBLEMS_SHOWN), `total` how many there were in all."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.total = len(problems)
        self.problems = problems[:MAX_PROBLEMS_SHOWN]
        lines = [f"{path}: {message}" for path, message in self.problems]
        shown = f" (first {len(self.problems)} shown)" if self.total > len(self.problems) else ""
        super().__init__(f"brief has {self.total} problem(s){shown}:\n" + "\n".join(lines))


class RequestInvalid(PipelineError, ValueError):
    """A request naming something its target does not have (a scene a spot lacks): the
    request is wrong, not the target missing. `problems` holds (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class NotFound(PipelineError, LookupError):
    """An id that does not exist (or is not visible to the caller)."""


class InvalidTransition(PipelineError):
    """A status change the state machine does not allow."""
