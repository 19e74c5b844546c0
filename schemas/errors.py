"""Errors raised on purpose by the pipeline, subclassed by what the caller should do."""

from __future__ import annotations


class PipelineError(Exception):
    """Base for errors raised on purpose."""


class TransientError(PipelineError):
    """Safe to retry: throttling, network, a restarting GPU worker."""


class BriefInvalid(PipelineError, ValueError):
    """The brief cannot be produced as written; `problems` holds (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{path}: {message}" for path, message in problems]
        super().__init__(f"brief has {len(problems)} problem(s):\n" + "\n".join(lines))


class NotFound(PipelineError, LookupError):
    """An id that does not exist (or is not visible to the caller)."""


class InvalidTransition(PipelineError):
    """A status change the state machine does not allow."""
