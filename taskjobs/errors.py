"""The one error tree of taskjobs: every error it raises is a ``TaskJobsError``."""

from __future__ import annotations


class TaskJobsError(Exception):
    """Base class of every error raised by taskjobs."""


class InvalidInputError(TaskJobsError, ValueError):
    """A value given to taskjobs is not valid; nothing was written."""


class InvalidStateError(InvalidInputError):
    """A job state outside the documented ones."""


class UnknownFieldError(InvalidInputError):
    """Job data with keys that are not job fields."""


class ConfigurationError(InvalidInputError):
    """A setting (database URL, option) taskjobs cannot use."""


class StoreError(TaskJobsError):
    """The job store failed; the database error is the ``__cause__``.

    ``retryable`` is true when the database could not be reached or the connection broke: the
    same write may succeed later.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class JobNotFoundError(TaskJobsError, LookupError):
    """No job has the id asked for (nor, when it may be shortened, an id starting with it)."""


class AmbiguousJobIdError(InvalidInputError):
    """A shortened job id that the ids of several jobs start with."""
