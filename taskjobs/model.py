"""What a job is: states, fields, the ``Job`` record, value encoding and lifecycle order keys.

Pure Python: no database, no Celery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from taskjobs.errors import InvalidInputError, InvalidStateError, UnknownFieldError

IDLE = "idle"
PENDING = "pending"
RUNNING = "running"
FINISHED = "finished"
ERROR = "error"

# Celery's own states, as a job's ``celery_state`` records them.
CELERY_PENDING = "PENDING"
CELERY_RECEIVED = "RECEIVED"
CELERY_STARTED = "STARTED"
CELERY_RETRY = "RETRY"
CELERY_SUCCESS = "SUCCESS"
CELERY_FAILURE = "FAILURE"
CELERY_REVOKED = "REVOKED"
CELERY_REJECTED = "REJECTED"

# Celery states taskjobs itself records, besides Celery's own.
# The worker that ran the task vanished (its heartbeats stopped).
CELERY_LOST = "LOST"
# The task replaced itself (``Task.replace``): the job ends when its replacement does.
CELERY_REPLACED = "REPLACED"
# The message was deleted from its queue before any worker took it (a purge).
CELERY_PURGED = "PURGED"
# The broker no longer holds the message of a job no worker took (``taskjobs reconcile``).
CELERY_VANISHED = "VANISHED"
# A revoke was sent for a job no worker has started: the worker that gets its message
# discards it (the job then ends in error, REVOKED).
CELERY_REVOKING = "REVOKING"
# The publish raised: no broker holds the message.
CELERY_PUBLISH_FAILED = "PUBLISH_FAILED"

# The documented states, in the schema's order.
STATES = (IDLE, PENDING, RUNNING, FINISHED, ERROR)
FINAL_STATES = frozenset({FINISHED, ERROR})

# Longest id, name, user, worker, queue, lineage id and exception type: indexed columns.
MAX_KEY_LENGTH = 255
# Longest Celery state (its column's size).
MAX_STATE_LENGTH = 32
# Largest pid or retry count: what a 32-bit integer column holds on every database.
MAX_INT = 2**31 - 1
# Years a timestamp may have: what every database's timestamp type holds.
MIN_YEAR, MAX_YEAR = 1000, 9999

# The seven documented fields, exactly as the user's reference describes them.
JOB_SCHEMA: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "required": True, "unique": True, "default": "", "options": []},
    "name": {"type": "string", "required": False, "unique": False, "default": "", "options": []},
    "user": {"type": "string", "required": False, "unique": False, "default": "", "options": []},
    "request": {"type": "string", "required": False, "unique": False, "default": "", "options": []},
    "result": {"type": "string", "required": False, "unique": False, "default": "", "options": []},
    "status": {
        "type": "string",
        "required": False,
        "unique": False,
        "default": IDLE,
        "options": list(STATES),
    },
    "messages": {
        "type": "string",
        "required": False,
        "unique": False,
        "default": "",
        "options": [],
    },
}

# Text fields whose values may be any JSON-serializable value (stored as JSON text).
TEXT_FIELDS = ("name", "user", "request", "result", "messages")
# Extra fields a caller may set through ``setJob`` data, next to the documented ones.
WRITABLE_EXTRA_FIELDS = (
    "celery_state",
    "worker",
    "pid",
    "queue",
    "retries",
    "parent_id",
    "root_id",
    "group_id",
    "eta",
    "exc_type",
)
WRITABLE_FIELDS = frozenset(("id", "status", *TEXT_FIELDS, *WRITABLE_EXTRA_FIELDS))
# Fields kept in indexed string columns, so bounded in length.
KEY_FIELDS = frozenset(
    ("name", "user", "worker", "queue", "parent_id", "root_id", "group_id", "exc_type")
)
INT_FIELDS = frozenset(("pid", "retries"))


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One job as stored: the documented fields first, then what the Celery layer records."""

    id: str
    name: str = ""
    user: str = ""
    request: str = ""
    result: str = ""
    status: str = IDLE
    messages: str = ""
    celery_state: str | None = None
    worker: str | None = None
    pid: int | None = None
    queue: str | None = None
    retries: int = 0
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    eta: datetime | None = None
    created_at: datetime | None = None
    received_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    runtime: float | None = None
    exc_type: str | None = None

    @property
    def queue_wait(self) -> float | None:
        """Seconds between the job's creation and its start, when both are known."""
        if self.created_at is None or self.started_at is None:
            return None
        return (self.started_at - self.created_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """The job as the plain dict the documented functions return."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


JOB_FIELDS = tuple(field.name for field in dataclasses.fields(Job))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: every timestamp taskjobs writes."""
    return datetime.now(timezone.utc)


def message_line(text: str, at: datetime) -> str:
    """One entry of a job's ``messages``: the UTC time stamp, the text, a newline."""
    return f"[{at:%Y-%m-%dT%H:%M:%S}Z] {text.rstrip()}\n"


_STAMPED = re.compile(r"^\[(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\] (?P<text>.*)$")


def message_entries(messages: str) -> list[tuple[str, str]]:
    """A job's messages read back as ``message_line`` wrote them: (time stamp, text) entries,
    oldest first; a line without a stamp continues the entry before it (a traceback)."""
    entries: list[tuple[str, str]] = []
    for line in messages.splitlines():
        stamped = _STAMPED.match(line)
        if stamped:
            entries.append((stamped["at"], stamped["text"]))
        elif entries:
            at, text = entries[-1]
            entries[-1] = (at, f"{text}\n{line}")
        else:
            entries.append(("", line))
    return entries


def check_state(state: object) -> str:
    """Return ``state`` if it is one of the documented states, else raise ``InvalidStateError``."""
    if isinstance(state, str) and state in STATES:
        return state
    raise InvalidStateError(f"invalid job state {state!r}: valid states are {', '.join(STATES)}")


def check_job_id(job_id: object) -> str:
    """Return the job id as a string; an ``int`` id means ``str(id)``."""
    if isinstance(job_id, bool) or not isinstance(job_id, (str, int)):
        raise InvalidInputError(
            f"invalid job id {job_id!r} of type {type(job_id).__name__}: "
            "a job id is a str or an int"
        )
    try:
        text = str(job_id)
    except ValueError:  # an int too long to print
        text = "9" * (MAX_KEY_LENGTH + 1)
    if not text:
        raise InvalidInputError("invalid job id '': a job id is a non-empty string")
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"invalid job id {text[:40]!r}... ({len(text)} characters): "
            f"a job id has at most {MAX_KEY_LENGTH} characters"
        )
    _check_text("id", text)
    return text


def encode_value(field: str, value: Any) -> str:
    """Encode one text field: ``str`` unchanged, ``None`` as empty, anything else as JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"invalid value for job field {field!r}: {type(value).__name__} is not "
                f"JSON-serializable ({exc}); give a str or a JSON-serializable value"
            ) from None
    _check_text(field, text)
    if field in KEY_FIELDS and len(text) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"invalid value for job field {field!r}: {len(text)} characters, "
            f"at most {MAX_KEY_LENGTH} are allowed"
        )
    return text


def _check_text(field: str, text: str) -> None:
    """Refuse text no database can store unchanged: NUL characters and lone surrogates."""
    if "\x00" in text:
        raise InvalidInputError(
            f"invalid value for job field {field!r}: it contains a NUL character, "
            "which databases cannot store in text"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"invalid value for job field {field!r}: it is not valid Unicode (a lone surrogate)"
        ) from None


def encode_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and encode ``setJob``-style data into column values; raise on unknown keys."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            f"invalid job data of type {type(data).__name__}: job data is a dict of job fields"
        )
    unknown = sorted(str(key) for key in data if key not in WRITABLE_FIELDS)
    if unknown:
        raise UnknownFieldError(
            f"unknown job field(s) {', '.join(map(repr, unknown))}: "
            f"valid fields are {', '.join(sorted(WRITABLE_FIELDS))}"
        )
    values: dict[str, Any] = {}
    for field, value in data.items():
        if field in ("id", "status"):
            continue  # checked by the caller against the job id and state it was given
        if field in TEXT_FIELDS:
            values[field] = encode_value(field, value)
        elif field in INT_FIELDS:
            values[field] = _check_int(field, value)
        elif field == "eta":
            values[field] = check_datetime(field, value)
        else:
            values[field] = None if value is None else encode_value(field, value)
            if (
                field == "celery_state"
                and value is not None
                and len(values[field]) > MAX_STATE_LENGTH
            ):
                raise InvalidInputError(
                    f"invalid value for job field 'celery_state': {len(values[field])} characters, "
                    f"at most {MAX_STATE_LENGTH} are allowed"
                )
    return values


def _check_int(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
        return value
    raise InvalidInputError(
        f"invalid value for job field {field!r}: {value!r} is not a whole number "
        f"from 0 to {MAX_INT}"
    )


def check_datetime(field: str, value: Any) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string; naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        try:
            utc = aware.astimezone(timezone.utc)
        except OverflowError:
            utc = None
        if utc is not None and MIN_YEAR <= utc.year <= MAX_YEAR:
            return aware
        raise InvalidInputError(
            f"invalid value for {field!r}: {value!r} is out of range: "
            f"give a time from year {MIN_YEAR} to {MAX_YEAR} (UTC)"
        )
    raise InvalidInputError(
        f"invalid value for {field!r}: {value!r} is not a datetime or an ISO 8601 string"
    )


def jsonable(value: Any) -> Any:
    """``value`` with every datetime (also in nested dicts and lists) as an ISO 8601 string."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


# Lifecycle order keys. An automatic write carries ``order_key(retries, stage)`` and is applied
# only when it is newer than the key stored on the row, so late or repeated events never move a
# job backwards. Within one attempt: published < received < running < presumed end <
# received again < running again < true end.
#
# Above the order key stands the delivery: every message a tracked publisher sends is stamped
# with its publish time (``delivery_stamp``), and the events of a message published later come
# after every event of an earlier one, whatever their keys. So an id that comes back in a new
# message after it ended (a re-published signature, ``apply_async(task_id=...)``, a task
# replaced by another under its id) starts over, while the duplicate and late events of one
# message are still ordered by their keys. Events that do not know their message's stamp
# (messages from untracked publishers, eager runs) are ordered by their keys alone.
STAGE_PUBLISHED = 1
STAGE_RECEIVED = 2
STAGE_RUNNING = 3
# An end taskjobs inferred (the worker vanished, the publish failed): a true end still wins.
STAGE_PRESUMED_END = 4
# The broker redelivered the message (its worker died, or Redis' visibility timeout passed):
# the same attempt runs again, and moves on from a presumed end.
STAGE_RECEIVED_AGAIN = 5
STAGE_RUNNING_AGAIN = 6
STAGE_ENDED = 7
STAGES_PER_ATTEMPT = 8


def order_key(retries: int, stage: int) -> int:
    """The order key of lifecycle event ``stage`` of the attempt after ``retries`` retries."""
    return max(retries, 0) * STAGES_PER_ATTEMPT + stage


def delivery_stamp(now: datetime, after: int | None = None) -> int:
    """The stamp of a message published at ``now``: microseconds since the epoch, and later than
    ``after``, the stamp of the message being processed (a retry or replacement published from
    inside a task orders after it even when the publisher's clock is behind)."""
    stamp = int(now.timestamp() * 1_000_000)
    return stamp if after is None or stamp > after else after + 1


def stamp_time(stamp: int) -> datetime:
    """The time a delivery stamp was taken (see ``delivery_stamp``), to the microsecond."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=stamp)


# The report's timeline has at most this many buckets, each a whole number of minutes.
TIMELINE_BUCKETS = 60


def bucket_seconds(since: datetime, until: datetime) -> int:
    """The width of the report's timeline buckets over [since, until): whole minutes, at
    most ``TIMELINE_BUCKETS`` of them."""
    seconds = max((until - since).total_seconds(), 60.0)
    minutes = -(-seconds // (60 * TIMELINE_BUCKETS))  # ceiling
    return int(minutes) * 60
