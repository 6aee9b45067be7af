"""The pure model: states, ids, value encoding, field checks and order keys."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from taskjobs.errors import InvalidInputError, InvalidStateError, UnknownFieldError
from taskjobs.model import (
    JOB_SCHEMA,
    STAGE_ENDED,
    STAGE_PRESUMED_END,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RECEIVED_AGAIN,
    STAGE_RUNNING,
    STAGE_RUNNING_AGAIN,
    STATES,
    Job,
    check_datetime,
    check_job_id,
    check_state,
    delivery_stamp,
    encode_data,
    encode_value,
    order_key,
    stamp_time,
)


def test_states_are_exactly_the_schema_options() -> None:
    assert STATES == ("idle", "pending", "running", "finished", "error")
    assert JOB_SCHEMA["status"]["options"] == list(STATES)


@pytest.mark.parametrize("state", STATES)
def test_valid_states_pass(state: str) -> None:
    assert check_state(state) == state


@pytest.mark.parametrize("state", ["completed", "PENDING", "", None, 1, "SUCCESS"])
def test_invalid_state_names_the_value_and_the_valid_ones(state: object) -> None:
    with pytest.raises(InvalidStateError) as caught:
        check_state(state)
    assert isinstance(caught.value, ValueError)
    assert repr(state) in str(caught.value)
    assert "idle, pending, running, finished, error" in str(caught.value)


def test_int_id_means_its_string() -> None:
    assert check_job_id(123) == "123"
    assert check_job_id("abc") == "abc"


@pytest.mark.parametrize("bad", ["", None, 1.5, True, b"id", "x" * 256, "a\x00b", "\ud800"])
def test_bad_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        check_job_id(bad)


def test_strings_are_stored_unchanged_and_other_values_as_json() -> None:
    assert encode_value("request", "plain text") == "plain text"
    assert encode_value("request", '{"already": "json"}') == '{"already": "json"}'
    assert encode_value("request", {"b": [1, 2.5, None]}) == '{"b": [1, 2.5, null]}'
    assert encode_value("result", 42) == "42"
    assert encode_value("result", True) == "true"
    assert encode_value("result", "héllo ✓") == "héllo ✓"
    assert encode_value("result", {"k": "ünï"}) == '{"k": "ünï"}'
    assert encode_value("result", None) == ""


@pytest.mark.parametrize("bad", [object(), {1, 2}, float("nan"), b"bytes"])
def test_values_that_are_not_json_are_refused_with_the_field_name(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="'result'"):
        encode_value("result", bad)


def test_indexed_fields_are_bounded() -> None:
    encode_value("name", "n" * 255)
    with pytest.raises(InvalidInputError, match="at most 255"):
        encode_value("name", "n" * 256)
    encode_value("request", "r" * 100_000)


def test_unknown_fields_are_named_with_the_valid_ones() -> None:
    with pytest.raises(UnknownFieldError) as caught:
        encode_data({"name": "x", "colour": "red", "size": 3})
    message = str(caught.value)
    assert "'colour'" in message and "'size'" in message
    assert "request" in message and "result" in message


def test_data_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInputError, match="list"):
        encode_data(["name"])  # type: ignore[arg-type]


def test_data_checks_extra_field_types() -> None:
    assert encode_data({"pid": 12, "retries": 0}) == {"pid": 12, "retries": 0}
    with pytest.raises(InvalidInputError, match="'pid'"):
        encode_data({"pid": "12"})
    eta = encode_data({"eta": "2026-01-02T03:04:05"})["eta"]
    assert eta == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with pytest.raises(InvalidInputError, match="'eta'"):
        encode_data({"eta": "tomorrow"})


def test_order_keys_follow_the_lifecycle_and_the_attempts() -> None:
    stages = [
        STAGE_PUBLISHED,
        STAGE_RECEIVED,
        STAGE_RUNNING,
        STAGE_PRESUMED_END,
        STAGE_RECEIVED_AGAIN,
        STAGE_RUNNING_AGAIN,
        STAGE_ENDED,
    ]
    keys = [order_key(0, stage) for stage in stages]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # Any event of a later attempt is newer than every event of an earlier one.
    assert order_key(1, STAGE_PUBLISHED) > order_key(0, STAGE_ENDED)


def test_job_dict_has_the_documented_keys_first() -> None:
    job = Job(id="1")
    as_dict = job.as_dict()
    assert list(as_dict)[:7] == list(JOB_SCHEMA)
    assert as_dict["status"] == "idle" and as_dict["messages"] == ""
    with pytest.raises(AttributeError):
        job.status = "running"  # type: ignore[misc]


def test_queue_wait_needs_both_times() -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    started = datetime(2026, 1, 1, 0, 0, 2, 500000, tzinfo=timezone.utc)
    assert Job(id="1", created_at=created, started_at=started).queue_wait == 2.5
    assert Job(id="1", created_at=created).queue_wait is None


def test_the_last_hour_of_year_9999_is_in_range_whatever_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last = datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc)
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # where that hour is already year 10000
    time.tzset()
    try:
        assert check_datetime("eta", last) == last
        first = datetime(1000, 1, 1, tzinfo=timezone.utc)
        assert check_datetime("eta", first) == first
        assert check_datetime("eta", "9999-12-31T23:59:59") == last.replace(minute=59, second=59)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_unknown_fields_are_named_with_every_valid_one() -> None:
    from taskjobs.model import WRITABLE_FIELDS, encode_data

    with pytest.raises(InvalidInputError) as caught:
        encode_data({"colour": 1, "age": 2, "name": "kept"})
    valid = ", ".join(sorted(WRITABLE_FIELDS))
    assert str(caught.value) == f"unknown job field(s) 'age', 'colour': valid fields are {valid}"


def test_id_and_status_in_the_data_do_not_hide_the_fields_after_them() -> None:
    from taskjobs.model import encode_data

    assert encode_data({"id": "x", "status": "pending", "name": "n", "user": "u"}) == {
        "name": "n",
        "user": "u",
    }


def test_a_celery_state_may_use_all_its_32_characters() -> None:
    from taskjobs.model import encode_data

    assert encode_data({"celery_state": "S" * 32}) == {"celery_state": "S" * 32}
    with pytest.raises(InvalidInputError, match="33 characters"):
        encode_data({"celery_state": "S" * 33})


def test_ids_of_other_types_and_too_long_ints_are_named_in_the_error() -> None:
    from taskjobs.model import MAX_KEY_LENGTH, check_job_id

    with pytest.raises(InvalidInputError) as caught:
        check_job_id(1.5)
    assert str(caught.value) == "invalid job id 1.5 of type float: a job id is a str or an int"
    with pytest.raises(InvalidInputError, match=f"at most {MAX_KEY_LENGTH} characters"):
        check_job_id(10**5000)  # too long even to print


def test_messages_read_back_as_stamped_entries_with_their_continuations() -> None:
    from taskjobs.model import message_entries, message_line

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    messages = "written by hand\n" + message_line("failed", at) + "Traceback\n  line 1\n"
    messages += message_line("retried", at)
    assert message_entries(messages) == [
        ("", "written by hand"),
        ("2026-01-02T03:04:05Z", "failed\nTraceback\n  line 1"),
        ("2026-01-02T03:04:05Z", "retried"),
    ]


def test_a_value_that_is_not_json_is_named_by_its_type() -> None:
    with pytest.raises(InvalidInputError) as caught:
        encode_value("result", {1, 2})
    assert str(caught.value).startswith(
        "invalid value for job field 'result': set is not JSON-serializable ("
    )


def test_counts_may_use_the_whole_32_bit_range() -> None:
    from taskjobs.model import MAX_INT

    assert encode_data({"pid": MAX_INT, "retries": MAX_INT}) == {"pid": MAX_INT, "retries": MAX_INT}
    with pytest.raises(InvalidInputError, match=f"from 0 to {MAX_INT}"):
        encode_data({"retries": MAX_INT + 1})


@pytest.mark.parametrize(
    ("span", "width"),
    [(30, 60), (3600, 60), (3601, 120), (3660, 120), (3661, 120), (7201, 180), (86400, 1440)],
)
def test_timeline_buckets_are_whole_minutes_and_at_most_sixty(span: int, width: int) -> None:
    from datetime import timedelta

    from taskjobs.model import TIMELINE_BUCKETS, bucket_seconds

    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert bucket_seconds(since, since + timedelta(seconds=span)) == width
    assert -(-span // width) <= TIMELINE_BUCKETS


def test_refused_ids_and_text_are_named_in_whole_sentences() -> None:
    """The exact messages: each names the value (or its start and length) and the rule."""
    from taskjobs.model import check_job_id

    def refusal(job_id: object) -> str:
        with pytest.raises(InvalidInputError) as caught:
            check_job_id(job_id)  # type: ignore[arg-type]
        return str(caught.value)

    assert refusal("") == "invalid job id '': a job id is a non-empty string"
    assert refusal("j" * 300) == (
        f"invalid job id {'j' * 40!r}... (300 characters): a job id has at most 255 characters"
    )
    assert refusal(10**5000) == (  # too long to print: named by its digits
        f"invalid job id {'9' * 40!r}... (256 characters): a job id has at most 255 characters"
    )
    assert refusal("a\x00b") == (
        "invalid value for job field 'id': it contains a NUL character, "
        "which databases cannot store in text"
    )
    assert refusal("a\ud800") == (
        "invalid value for job field 'id': it is not valid Unicode (a lone surrogate)"
    )


def test_a_delivery_stamp_gives_back_its_time_to_the_microsecond() -> None:
    at = datetime(2026, 12, 4, 22, 15, 10, 670576, tzinfo=timezone.utc)
    assert stamp_time(delivery_stamp(at)) == at
    assert stamp_time(delivery_stamp(at, after=delivery_stamp(at))) == at + timedelta(
        microseconds=1
    )
