"""Errors raised on purpose by the model package."""


class MovaError(Exception):
    """Base for errors raised on purpose by mova_model."""


class ConfigError(MovaError, ValueError):
    """A configuration value is impossible or unsupported."""


class CheckpointError(MovaError):
    """A checkpoint folder is missing, incomplete or does not match the model."""


class InvalidRequest(MovaError, ValueError):
    """A generation request cannot be honoured as written (sizes, inputs, modes)."""


class GenerationCancelled(MovaError):
    """The caller asked to stop a generation before it finished."""


class GenerationFailed(MovaError):
    """A render produced an unusable result (NaN or infinite values), although it ran."""
