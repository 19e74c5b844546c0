"""Storage errors, rooted in the pipeline's error classes so retries see TransientError."""

from __future__ import annotations

from schemas.errors import PipelineError, TransientError


class StorageError(PipelineError):
    """An object could not be stored, read or verified as asked."""


class TransientStorageError(StorageError, TransientError):
    """Throttling, a 5xx answer or a dropped connection: safe to retry."""


class InvalidKey(StorageError, ValueError):
    """A key that would escape its root or prefix, or is malformed."""
