"""Properties of the job API under hostile input, found with Hypothesis on every database.

Hostile input: every documented function, given any id, state, data or value, either refuses it
with ``taskjobs.InvalidInputError`` (a ``ValueError``) whose message names what is wrong, having
written nothing, or stores it and reads it back as the README says. The expected outcome of each
call is worked out from the README's rules alone (``_text_outcome`` and friends), not from
taskjobs' own validation code. Where the README is silent (a lone surrogate, a NaN, a bool id,
``exc_type`` in ``setJob`` data), both outcomes are allowed, but never a ``StoreError`` or any
other exception.

No property is known broken: a property found broken is fixed in the code, and the smallest
failing input stays as an explicit ``@example`` of its test.

The ``store`` fixture empties the tables once per test, not once per Hypothesis example, so each
example empties them itself (``_empty``) and the function-scoped-fixture health check is
suppressed for that reason. ``--hypothesis-show-statistics`` shows how many calls were
refused and how many stored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from taskjobs import InvalidInputError
from taskjobs.api.job import (
    createJob,
    deleteJob,
    findJob,
    getJob,
    getJobResults,
    getJobs,
    getPendingJobs,
    setJob,
    setJobFinished,
    setJobPending,
    setJobRunning,
    updateJobResult,
)
from taskjobs.store import Store
from taskjobs.store.tables import jobs, transitions


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


# -- the README's rules ----------------------------------------------------------------------------

STATES = ("idle", "pending", "running", "finished", "error")
TEXT_FIELDS = ("name", "user", "request", "result", "messages")
KEY_TEXT_FIELDS = ("name", "user")  # indexed: at most 255 characters
MAX_KEY = 255
EXTRA_KEY_FIELDS = ("worker", "queue", "parent_id", "root_id", "group_id")
INT_FIELDS = ("pid", "retries")
# What ``setJob`` data may hold, as the README lists it.
DATA_KEYS = frozenset(
    ("id", "status", *TEXT_FIELDS, "celery_state", *EXTRA_KEY_FIELDS, *INT_FIELDS, "eta")
)
# Writable in taskjobs but not in the README's list: accepting or refusing it are both fine.
UNLISTED_KEYS = frozenset(("exc_type",))

STORE, EITHER, REFUSE = "store", "either", "refuse"
_RANK = {STORE: 0, EITHER: 1, REFUSE: 2}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the README says a call does with one input: store ``value``, refuse, or either.

    ``names`` are what a refusal's message may name (any one of them will do).
    """

    kind: str
    value: Any = None
    names: tuple[str, ...] = ()


def stored(value: Any) -> Outcome:
    return Outcome(STORE, value)


def refused(*names: str) -> Outcome:
    return Outcome(REFUSE, None, names)


def either(value: Any, *names: str) -> Outcome:
    return Outcome(EITHER, value, names)


def combine(*outcomes: Outcome) -> Outcome:
    """The outcome of a call given several inputs: the worst one; any reason may be named."""
    kind = max((o.kind for o in outcomes), key=_RANK.__getitem__, default=STORE)
    return Outcome(kind, None, tuple(name for o in outcomes for name in o.names))


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _strict_json(value: Any) -> bool:
    """Whether ``value`` is JSON without Python's NaN/Infinity extension."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def _text_outcome(field: str, value: Any, *, bounded: bool | None = None) -> Outcome:
    """A text field: a str unchanged, None as "", anything else as ``json.dumps`` text; NUL
    refused, non-JSON refused, over 255 characters refused for the indexed fields."""
    names = (repr(field),)
    if value is None:
        return stored("")
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return refused(*names)
    bounded = field in KEY_TEXT_FIELDS if bounded is None else bounded
    if "\x00" in text or (bounded and len(text) > MAX_KEY):
        return refused(*names)
    if _has_surrogate(text) or not _strict_json(value):
        # The README names neither: no UTF-8 database holds a lone surrogate, and NaN is
        # Python's extension of JSON.
        return either(text, *names)
    return stored(text)


def _id_outcome(job_id: Any) -> Outcome:
    """Ids are strings of 1 to 255 characters; an int means its str."""
    names = ("job id", "'id'")
    if isinstance(job_id, bool):
        return either(str(job_id), *names)  # an int to Python, not one to the README
    if isinstance(job_id, int):
        text = str(job_id)
    elif isinstance(job_id, str):
        text = job_id
    else:
        return refused(*names)
    if not 1 <= len(text) <= MAX_KEY or "\x00" in text:
        return refused(*names)
    if _has_surrogate(text):
        return either(text, *names)
    return stored(text)


def _state_outcome(state: Any) -> Outcome:
    if isinstance(state, str) and state in STATES:
        return stored(state)
    return refused("valid states are idle, pending, running, finished, error")


def _is_json(value: Any) -> bool:
    """Whether ``json.loads(json.dumps(value))`` gives ``value`` back."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


# -- strategies ------------------------------------------------------------------------------------

# Any character a database can hold: every Unicode scalar value but NUL.
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
# Characters and sequences that trouble collations, escaping and encodings.
AWKWARD = (
    " ",
    "\t",
    "\n",
    "\r",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "e\u0301",
    "é",
    "ß",
    "İ",
    "\u0131",  # dotless i
    "ﬁ",
    "\u2126",  # ohm sign, NFKC: omega
    "\u03a9",
    "Σσς",
    "🚀",
    "👩‍💻",
    "'",
    '"',
    "\\",
    "%",
    "_",
    "');--",
    "\\u0000",
)
HOSTILE = ("\x00", "\ud800", "\udfff")

valid_texts = st.one_of(
    st.text(TEXT_CHARS, max_size=30),
    st.lists(st.sampled_from(AWKWARD), max_size=8).map("".join),
)
hostile_texts = st.lists(
    st.one_of(TEXT_CHARS, st.sampled_from(AWKWARD), st.sampled_from(HOSTILE)), max_size=12
).map("".join)
# Around the 255-character bound of ids, names and users, in 1- to 4-byte characters.
long_texts = st.builds(lambda char, n: char * n, st.sampled_from("xé€🚀 "), st.integers(250, 260))

BIG_INTS = (2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100, -(10**300))
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(BIG_INTS),
        st.floats(allow_nan=False, allow_infinity=False),
        valid_texts,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(valid_texts, inner, max_size=4)
    ),
    max_leaves=12,
)
# JSON-serializable to Python but not JSON values: tuples, non-str keys, NaN, hostile strings.
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(hostile_texts, st.integers(), st.none(), st.booleans(), st.floats()),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


class _Thing:
    pass


NON_JSON: tuple[Callable[[], Any], ...] = (
    object,
    _Thing,
    _circular,
    lambda: {1, 2},
    lambda: frozenset(),
    lambda: b"bytes",
    lambda: bytearray(b"bytes"),
    lambda: 1 + 2j,
    lambda: Decimal("1.5"),
    lambda: datetime(2026, 1, 1),
    lambda: date(2026, 1, 1),
    lambda: uuid.UUID(int=1),
    lambda: range(3),
    lambda: {(1, 2): "tuple key"},
    lambda: [1, {"deep": object()}],
    lambda: 10**5000,  # beyond Python's int-to-text limit
)
non_json_values = st.sampled_from(NON_JSON).map(lambda make: make())
clean_values = st.one_of(json_values, valid_texts)
field_values = st.one_of(json_values, hostile_texts, long_texts, json_like, non_json_values)

valid_ids = st.one_of(
    st.text(TEXT_CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(AWKWARD), min_size=1, max_size=8).map("".join),
    st.builds(lambda char, n: char * n, st.sampled_from("x🚀 "), st.integers(254, 255)),
)
int_ids = st.one_of(
    st.integers(),
    st.integers(-(10**300), 10**300),
    st.sampled_from((0, -1, 2**63, 10**254, 10**255, -(10**254))),  # 255, 256, 256 characters
)
hostile_ids = st.one_of(
    st.sampled_from(("", "x" * 256, "nul\x00id", "\ud800", None, 1.5, True, b"id", ("id",))),
    st.builds(list),
    st.builds(dict),
    hostile_texts,
)
job_ids = st.one_of(valid_ids, int_ids, hostile_ids)
states = st.one_of(
    st.sampled_from(STATES),
    st.sampled_from(("completed", "PENDING", "pending ", " running", "", "done", None, 1, b"idle")),
    st.builds(list, st.just(("pending",))),
)
UNKNOWN_KEYS = (
    "completed",
    "Name",
    "name ",
    " name",
    "NAME",
    "ID",
    "Status",
    "results",
    "message",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "received_at",
    "runtime",
    "seq",
    "",
    "user\x00",
)
data_keys = st.one_of(
    st.sampled_from(TEXT_FIELDS),
    st.sampled_from(UNKNOWN_KEYS),
    st.text(max_size=12).filter(lambda key: key not in DATA_KEYS | UNLISTED_KEYS),
    st.integers(-2, 2),
    st.none(),
)
SETTERS: dict[str, tuple[Callable[..., dict[str, Any]], str | None]] = {
    "setJob": (setJob, None),
    "setJobPending": (setJobPending, "pending"),
    "setJobRunning": (setJobRunning, "running"),
    "setJobFinished": (setJobFinished, "finished"),
}
SEED = {"name": "seed", "user": "seeder", "request": "seed-request", "result": "", "messages": "m"}


@dataclasses.dataclass
class SetCall:
    setter: str
    job_id: Any
    data: Any
    state: Any  # ``DEFAULT``: the argument left out
    seeded: bool

    def run(self) -> dict[str, Any]:
        function, fixed = SETTERS[self.setter]
        if fixed is not None or self.state is DEFAULT:
            return function(self.job_id, self.data)
        return function(self.job_id, self.data, self.state)

    def effective_state(self) -> Any:
        fixed = SETTERS[self.setter][1]
        return fixed or ("pending" if self.state is DEFAULT else self.state)


DEFAULT = object()


@st.composite
def set_calls(draw: st.DrawFn) -> SetCall:
    """Half the calls are valid (but for a name or user over 255 characters), half hostile."""
    setter = draw(st.sampled_from(sorted(SETTERS)))
    if draw(st.booleans()):
        job_id = draw(st.one_of(valid_ids, st.integers()))
        state = draw(st.sampled_from((*STATES, DEFAULT))) if setter == "setJob" else DEFAULT
        effective = SETTERS[setter][1] or ("pending" if state is DEFAULT else state)
        data: Any = draw(st.dictionaries(st.sampled_from(TEXT_FIELDS), clean_values, max_size=5))
        if draw(st.integers(0, 3)) == 0:
            data["status"] = effective
        if draw(st.integers(0, 3)) == 0:
            data["id"] = draw(st.sampled_from((job_id, str(job_id))))
        return SetCall(setter, job_id, data, state, draw(st.booleans()))
    job_id = draw(job_ids)
    state = draw(st.one_of(states, st.just(DEFAULT))) if setter == "setJob" else DEFAULT
    effective = SETTERS[setter][1] or ("pending" if state is DEFAULT else state)
    data = draw(st.dictionaries(data_keys, field_values, max_size=5))
    if draw(st.integers(0, 3)) == 0:
        data["status"] = draw(st.one_of(st.just(effective), states))
    if draw(st.integers(0, 3)) == 0:
        text = str(job_id)
        data["id"] = draw(
            st.sampled_from((job_id, text, text.upper(), text + " ", "other", 0, None))
        )
    if draw(st.integers(0, 15)) == 0:
        data = draw(st.sampled_from((None, "name", 42, [("name", "x")], ["name"])))
    return SetCall(setter, job_id, data, state, draw(st.booleans()))


def _set_outcome(call: SetCall) -> tuple[Outcome, dict[str, Outcome]]:
    """The outcome of a ``setJob`` call, and of each text field in its data."""
    id_outcome = _id_outcome(call.job_id)
    state = call.effective_state()
    parts = [id_outcome, _state_outcome(state)]
    fields: dict[str, Outcome] = {}
    if not isinstance(call.data, Mapping):
        return combine(*parts, refused("job data")), fields
    for key, value in call.data.items():
        if key in TEXT_FIELDS:
            fields[key] = _text_outcome(key, value)
            parts.append(fields[key])
        elif key == "status":
            if value != state:
                parts.append(refused("status"))
        elif key == "id":
            if id_outcome.kind != REFUSE and str(value) != id_outcome.value:
                parts.append(refused("job id"))
        else:
            parts.append(refused(repr(str(key))))
    return combine(*parts), fields


# -- helpers ---------------------------------------------------------------------------------------


def _empty(store: Store) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.delete(transitions))
        connection.execute(sa.delete(jobs))


def _snapshot(store: Store) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every job row (by id) and every history row, straight from the tables."""
    with store.engine.connect() as connection:
        rows = {row.id: tuple(row) for row in connection.execute(sa.select(jobs))}
        history = [tuple(row) for row in connection.execute(sa.select(transitions))]
    return rows, sorted(history, key=lambda row: row[0])


def _attempt(function: Callable[..., Any], *args: Any) -> tuple[Any, InvalidInputError | None]:
    """Call ``function``; an ``InvalidInputError`` is returned, any other error propagates."""
    name = getattr(function, "__name__", "call")
    try:
        answer = function(*args)
    except InvalidInputError as error:
        event(f"{name}: refused")  # see them with --hypothesis-show-statistics
        return None, error
    event(f"{name}: done")
    return answer, None


def _check_refusal(
    store: Store,
    error: InvalidInputError,
    outcome: Outcome,
    before: tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]],
) -> None:
    assert outcome.kind != STORE, f"valid input refused: {error}"
    assert isinstance(error, ValueError)
    assert any(name in str(error) for name in outcome.names), (
        f"the message {str(error)!r} names none of {outcome.names}"
    )
    assert _snapshot(store) == before, "a refused call wrote something"


def _others_unchanged(
    store: Store, job_id: str, before: tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]
) -> None:
    rows, _ = _snapshot(store)
    assert {k: v for k, v in rows.items() if k != job_id} == {
        k: v for k, v in before[0].items() if k != job_id
    }


def _check_text(stored_text: str, value: Any, outcome: Outcome) -> None:
    assert stored_text == outcome.value
    if not isinstance(value, str) and value is not None and _is_json(value):
        assert json.loads(stored_text) == value


def _seed(store: Store, job_id: Any, seeded: bool) -> dict[str, Any] | None:
    """Empty the tables, add a decoy job, and the job itself when ``seeded``; return the job as
    it is before the call (None when it does not exist or its id is not a valid one)."""
    _empty(store)
    setJob("decoy", {"name": "decoy", "result": [1, 2]}, "running")
    outcome = _id_outcome(job_id)
    if outcome.kind != STORE:
        return None
    if seeded:
        setJob(outcome.value, SEED, "finished")
    return getJob(outcome.value, "finished") or getJob(outcome.value, "running")


# -- hostile input -------------------------------------------------------------------------------


@_settings(150)
@given(call=set_calls())
def test_set_job_refuses_cleanly_or_stores_exactly_what_it_was_given(
    store: Store, call: SetCall
) -> None:
    """setJob and its three shorthands, with any id, state and data."""
    prior = _seed(store, call.job_id, call.seeded)
    before = _snapshot(store)
    outcome, fields = _set_outcome(call)
    job, error = _attempt(call.run)
    if error is not None:
        _check_refusal(store, error, outcome, before)
        return
    assert outcome.kind != REFUSE, f"accepted what the README refuses: {outcome.names}"
    job_id = str(job["id"])
    assert job_id == _id_outcome(call.job_id).value
    assert job["status"] == call.effective_state()
    for field in TEXT_FIELDS:
        if field in fields:
            _check_text(job[field], call.data[field], fields[field])
        else:
            kept = prior[field] if prior else ""
            assert job[field] == kept, f"{field} changed though not given"
    assert getJob(job_id, job["status"]) == job
    record, state = findJob(call.job_id)
    assert record is not None and (record.as_dict(), state) == (job, job["status"])
    if prior:
        assert job["created_at"] == prior["created_at"]
    _others_unchanged(store, job_id, before)


@_settings(60)
@given(
    values=st.one_of(st.tuples(*[clean_values] * 4), st.tuples(*[field_values] * 4)),
)
def test_create_job_refuses_cleanly_or_stores_a_new_pending_job(
    store: Store, values: tuple[Any, Any, Any, Any]
) -> None:
    _seed(store, "x", seeded=False)
    before = _snapshot(store)
    name, user, request, result = values
    given_values = {"name": name, "user": user, "request": request, "result": result}
    outcomes = {field: _text_outcome(field, value) for field, value in given_values.items()}
    job, error = _attempt(createJob, name, user, request, result)
    if error is not None:
        _check_refusal(store, error, combine(*outcomes.values()), before)
        return
    assert combine(*outcomes.values()).kind != REFUSE
    assert str(uuid.UUID(job["id"])) == job["id"]
    assert job["status"] == "pending" and job["messages"] == ""
    for field, value in given_values.items():
        _check_text(job[field], value, outcomes[field])
    assert getJob(job["id"]) == job
    assert set(_snapshot(store)[0]) == {*before[0], job["id"]}


@_settings(60)
@given(
    job_id=job_ids,
    data=st.one_of(clean_values, field_values),
    input_job=st.sampled_from(("none", "same", "str", "other", "no id")),
    seeded=st.booleans(),
)
def test_update_job_result_refuses_cleanly_or_finishes_the_job_with_that_result(
    store: Store, job_id: Any, data: Any, input_job: str, seeded: bool
) -> None:
    prior = _seed(store, job_id, seeded)
    before = _snapshot(store)
    given_job = {
        "none": None,
        "same": {"id": job_id},
        "str": {"id": str(job_id)},
        "other": {"id": "other"},
        "no id": {},
    }[input_job]
    id_outcome = _id_outcome(job_id)
    result = _text_outcome("result", data)
    parts = [id_outcome, result]
    if given_job is not None and str(given_job.get("id")) != id_outcome.value:
        parts.append(refused("inputJob"))
    outcome = combine(*parts)
    returned, error = _attempt(updateJobResult, job_id, data, given_job)
    if error is not None:
        _check_refusal(store, error, outcome, before)
        return
    assert outcome.kind != REFUSE and returned is None
    text_id = str(id_outcome.value)
    job = getJobResults(text_id)
    assert job is not None and job["status"] == "finished"
    _check_text(job["result"], data, result)
    assert job["name"] == (prior["name"] if prior else "")
    _others_unchanged(store, text_id, before)


@_settings(60)
@given(job_id=job_ids, state=states, present=st.booleans())
def test_readers_and_delete_refuse_bad_ids_or_touch_exactly_that_job(
    store: Store, job_id: Any, state: Any, present: bool
) -> None:
    prior = _seed(store, job_id, seeded=False)
    id_outcome = _id_outcome(job_id)
    if present and id_outcome.kind == STORE:
        prior = setJob(id_outcome.value, {"name": "target"}, "running")
    before = _snapshot(store)

    found, error = _attempt(getJob, job_id, state)
    if error is not None:
        _check_refusal(store, error, combine(id_outcome, _state_outcome(state)), before)
    else:
        assert combine(id_outcome, _state_outcome(state)).kind != REFUSE
        assert found == (prior if prior and prior["status"] == state else None)

    for reader in (findJob, getJobResults):
        answer, error = _attempt(reader, job_id)
        if error is not None:
            _check_refusal(store, error, id_outcome, before)
            continue
        assert id_outcome.kind != REFUSE
        if reader is findJob:
            record, status = answer
            assert (record and record.as_dict(), status) == (
                (prior, prior["status"]) if prior else (None, None)
            )
        else:
            assert answer is None  # never finished

    deleted, error = _attempt(deleteJob, job_id)
    if error is not None:
        _check_refusal(store, error, id_outcome, before)
        return
    assert id_outcome.kind != REFUSE and deleted is None
    assert set(_snapshot(store)[0]) == set(before[0]) - {id_outcome.value}


@_settings(40)
@given(
    base=st.one_of(
        st.text(
            st.one_of(TEXT_CHARS, st.sampled_from("aAzZßİ\u0131\u03c3ςΣǅéﬁ ")),
            min_size=1,
            max_size=20,
        ),
        st.lists(st.sampled_from(AWKWARD), min_size=1, max_size=5).map("".join),
    ),
    number=st.integers(0, 10**30),
)
def test_ids_differing_in_case_spaces_or_normalization_are_distinct_jobs(
    store: Store, base: str, number: int
) -> None:
    _empty(store)
    candidates = {
        base,
        base.upper(),
        base.lower(),
        base.swapcase(),
        base.casefold(),
        base + " ",
        base + "  ",
        " " + base,
        base.strip(),
        base + "\t",
        base + "\u00a0",
        *(unicodedata.normalize(form, base) for form in ("NFC", "NFD", "NFKC", "NFKD")),
        str(number),
        str(number) + " ",
        "0" + str(number),
        "+" + str(number),
    }
    ids = sorted(i for i in candidates if 1 <= len(i) <= MAX_KEY and "\x00" not in i)
    for index, job_id in enumerate(ids):
        setJob(job_id, {"name": f"job {index}"})
    for index, job_id in enumerate(ids):
        job = getJob(job_id)
        assert job is not None and (job["id"], job["name"]) == (job_id, f"job {index}")
    assert sorted(job["id"] for job in getJobs()) == ids
    # An int id is its str: the same job, not a new one.
    assert getJob(number) == getJob(str(number))
    setJob(number, {"result": "by int"})
    assert getJob(str(number))["result"] == "by int"  # type: ignore[index]
    assert len(getJobs()) == len(ids)
    # Deleting one of them deletes only that one.
    deleteJob(ids[0])
    assert sorted(job["id"] for job in getJobs()) == ids[1:]


@_settings(30)
@given(
    base=valid_texts,
    values=st.lists(
        st.one_of(json_values, st.sampled_from(("", " ", "A", "a", "a ", "é", "e\u0301"))),
        min_size=1,
        max_size=5,
    ),
)
def test_listing_by_name_or_user_finds_exactly_the_jobs_with_that_value(
    store: Store, base: str, values: list[Any]
) -> None:
    """Filters compare exactly, like ids: case, trailing spaces and normalization count."""
    _empty(store)
    candidates = [base, base.upper(), base + " ", unicodedata.normalize("NFD", base), *values]
    texts = {}
    for value in candidates:
        outcome = _text_outcome("name", value)
        if value is not None and outcome.kind == STORE:  # None means no filter
            texts[repr(value)] = (value, outcome.value)
    written: dict[str, str] = {}
    for index, (value, text) in enumerate(texts.values()):
        job_id = f"job-{index}"
        setJob(job_id, {"name": value, "user": value})
        written[job_id] = text
    for value, text in texts.values():
        expected = {job_id for job_id, other in written.items() if other == text}
        assert {job["id"] for job in getJobs(name=value)} == expected
        assert {job["id"] for job in getPendingJobs(user=value)} == expected
        assert {job["id"] for job in getJobs(name=value, user=value, limit=1000)} == expected


# Extra fields of ``setJob`` data, within what each database column can hold.
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
SAFE_MOMENTS = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none() | OFFSETS
)
NOT_INTS = st.sampled_from((1.5, "3", True, [1], Decimal(2)))
NOT_MOMENTS = st.sampled_from(("tomorrow", "", "2026-13-01", 1_700_000_000, date(2026, 1, 1)))


def _extras(ints: Any, codes: Any, moments: Any) -> Any:
    """``setJob`` data of extra fields: half of it valid, half with hostile values."""

    def extras(texts: Any, not_ints: Any, not_moments: Any) -> Any:
        return st.fixed_dictionaries(
            {},
            optional={
                "celery_state": st.none() | codes,
                **dict.fromkeys(EXTRA_KEY_FIELDS, st.none() | texts),
                "exc_type": st.none() | valid_texts,
                "pid": st.none() | ints | not_ints,
                "retries": st.none() | ints | not_ints,
                "eta": st.none() | moments | moments.map(datetime.isoformat) | not_moments,
            },
        )

    return extras(clean_values, st.nothing(), st.nothing()) | extras(
        field_values, NOT_INTS, NOT_MOMENTS
    )


safe_extras = _extras(st.integers(0, 2**31 - 1), st.text(TEXT_CHARS, max_size=32), SAFE_MOMENTS)
any_extras = _extras(
    st.integers(),
    st.text(TEXT_CHARS, max_size=64),
    st.datetimes(timezones=st.none() | OFFSETS),
)


def _extra_outcome(field: str, value: Any) -> Outcome:
    """README: setJob data may hold these: pid and retries are whole numbers from 0 to 2**31 - 1,
    eta a datetime or ISO 8601 string of year 1000 to 9999 (UTC), celery_state at most 32
    characters. None stores NULL (``retries`` reads as 0)."""
    if value is None:
        return stored(0 if field == "retries" else None)
    if field in INT_FIELDS:
        if isinstance(value, int) and not isinstance(value, bool):
            return stored(value) if 0 <= value < 2**31 else refused(repr(field))
        return refused(repr(field))
    if field == "eta":
        moment = value
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return refused(repr(field))
        if not isinstance(moment, datetime):
            return refused(repr(field))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        try:
            # The README gives no range; MariaDB's DATETIME starts at year 1000.
            in_range = moment.astimezone(timezone.utc).year >= 1000
        except OverflowError:
            in_range = False
        return stored(moment) if in_range else either(moment, repr(field))
    outcome = _text_outcome(field, value, bounded=False)
    if outcome.kind == REFUSE:
        return outcome
    text = outcome.value
    too_long = len(text) > (32 if field == "celery_state" else MAX_KEY)
    if field == "exc_type" or too_long or outcome.kind == EITHER:
        # No bound in the README: refusing is fine (with InvalidInputError), failing is not.
        return either(text, repr(field), "'exc_type'")
    return stored(text)


def _check_extras(store: Store, data: dict[str, Any]) -> None:
    _empty(store)
    setJob("decoy", {"name": "decoy"}, "running")
    before = _snapshot(store)
    outcomes = {field: _extra_outcome(field, value) for field, value in data.items()}
    job, error = _attempt(setJob, "job", data, "running")
    if error is not None:
        _check_refusal(store, error, combine(*outcomes.values()), before)
        return
    assert combine(*outcomes.values()).kind != REFUSE
    for field, outcome in outcomes.items():
        assert job[field] == outcome.value, field
    assert getJob("job", "running") == job
    _others_unchanged(store, "job", before)


@_settings(80)
@given(data=safe_extras)
def test_set_job_extra_fields_refuse_cleanly_or_round_trip(
    store: Store, data: dict[str, Any]
) -> None:
    _check_extras(store, data)


# -- hostile input the README promises to refuse cleanly, which taskjobs does not -------------


@_settings(40)
@example(data={"pid": 2**63})
@example(data={"retries": -(2**31) - 1})
@example(data={"celery_state": "S" * 33})
@example(data={"eta": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))})
@given(data=any_extras)
def test_set_job_extra_fields_of_any_size_refuse_cleanly_or_round_trip(
    store: Store, data: dict[str, Any]
) -> None:
    _check_extras(store, data)


@_settings(30)
@example(number=10**4300)
@given(number=st.integers())
def test_any_int_id_is_refused_cleanly_or_means_its_str(store: Store, number: int) -> None:
    _empty(store)
    job, error = _attempt(setJob, number, {"name": "n"})
    if error is not None:
        assert abs(number) >= 10 ** (MAX_KEY - 1) and getJobs() == []
        return
    assert job["id"] == str(number) and getJob(str(number)) == job


@_settings(20)
@example(input_job="job-1")
@given(input_job=st.one_of(valid_texts, st.lists(st.integers()), st.integers()))
def test_update_job_result_refuses_an_input_job_that_is_not_a_job(
    store: Store, input_job: Any
) -> None:
    _seed(store, "job-1", seeded=True)
    before = _snapshot(store)
    with pytest.raises(InvalidInputError, match="inputJob"):
        updateJobResult("job-1", "result", input_job)
    assert _snapshot(store) == before


@_settings(20)
@example(moment=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
@given(moment=st.datetimes(timezones=st.none() | OFFSETS))
def test_listing_refuses_cleanly_or_answers_for_any_time_bound(
    store: Store, moment: datetime
) -> None:
    _empty(store)
    setJob("job", {})
    for bound in ("since", "until"):
        listed, error = _attempt(functools.partial(getJobs, **{bound: moment}))
        assert error is not None or isinstance(listed, list)


@_settings(20)
@example(data={})
@given(
    data=st.fixed_dictionaries({}, optional={"name": valid_texts, "user": valid_texts}),
)
def test_every_job_is_listed_under_its_own_name_and_user(
    store: Store, data: dict[str, Any]
) -> None:
    _empty(store)
    job = setJob("job", data)
    assert [j["id"] for j in getJobs(name=job["name"])] == ["job"]
    assert [j["id"] for j in getJobs(user=job["user"])] == ["job"]
