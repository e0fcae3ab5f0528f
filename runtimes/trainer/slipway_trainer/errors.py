"""The three ways a run can end badly, each with the exit code and termination reason the contract gives it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID_INPUT = 65  # EX_DATAERR: permanent, the controller burns no retry
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: worth retrying
EXIT_ERROR = 1  # anything else: retried up to backoffLimit


class TrainerError(Exception):
    """An expected failure: its message is meant for the user and ends up in the termination message."""

    reason = "Error"
    exit_code = EXIT_ERROR


class InvalidInput(TrainerError):
    """Bad config, dataset, column, algorithm or hyperparameter: running again cannot help."""

    reason = "InvalidInput"
    exit_code = EXIT_INVALID_INPUT


class Transient(TrainerError):
    """S3 unreachable, timing out or throttling after our bounded retries: a later attempt may succeed."""

    reason = "Transient"
    exit_code = EXIT_TRANSIENT
