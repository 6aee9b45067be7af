"""What a job stores of a task, built without Celery running or a database: request, result and
failure text."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import traceback
import uuid
from types import SimpleNamespace
from typing import Any

import kombu.utils.json as kombu_json
import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.result import AsyncResult
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps as kombu_dumps

from taskjobs.celery.payload import capped, failure_text, json_text, request_text, result_text
from taskjobs.settings import Settings

SETTINGS = Settings.load({})
TASK = SimpleNamespace()  # a task without options of its own


def request(args: Any = (), kwargs: Any = None, **given: Any) -> Any:
    text = request_text(
        SETTINGS, TASK, args, kwargs, given.get("argsrepr"), given.get("kwargsrepr")
    )
    return json.loads(text)


def test_a_request_is_its_args_and_kwargs_as_json() -> None:
    assert request((1, "two"), {"three": 3.0}) == {"args": [1, "two"], "kwargs": {"three": 3.0}}
    assert request(None, None) == {"args": [], "kwargs": {}}


def test_celerys_own_reprs_do_not_replace_the_arguments() -> None:
    """Celery sets argsrepr/kwargsrepr to its own reprs by default: the real values are kept
    (and redacted); a tuple published arrives at the worker as a list."""
    args, kwargs = (1, [2]), {"password": "hunter2"}
    default = request(args, kwargs, argsrepr=saferepr(args), kwargsrepr=saferepr(kwargs))
    assert default == {"args": [1, [2]], "kwargs": {"password": "***"}}
    as_list = request(list(args), kwargs, argsrepr=saferepr(args), kwargsrepr=saferepr(kwargs))
    assert as_list == default


def test_celerys_reprs_of_long_deep_or_retyped_arguments_are_still_its_own() -> None:
    """Celery cuts its reprs at 1,024 characters and three levels; a tuple may arrive as a
    list and a list as a tuple: the arguments are still stored, not the reprs."""
    long, deep = ["x" * 3000], [[[[["deep"]]]]]
    for args in (long, deep):
        assert request(args, {}, argsrepr=saferepr(args, 1024))["args"] == args
        assert request(tuple(args), {}, argsrepr=saferepr(list(args), 1024))["args"] == args


def test_a_publishers_repr_that_shows_the_arguments_whole_keeps_the_arguments() -> None:
    """A plain repr of the arguments (longer than Celery would make its own) hides nothing:
    the arguments themselves are stored, and their secret-looking keyword arguments redacted."""
    args, kwargs = (["x" * 3000],), {"token": "t0k3n"}
    stored = request(args, kwargs, argsrepr=repr(args), kwargsrepr=repr(kwargs))
    assert stored == {"args": [["x" * 3000]], "kwargs": {"token": "***"}}


def test_an_argument_whose_repr_raises_still_leaves_a_request() -> None:
    """Pickled arguments can be any object; Celery's saferepr survives a failing __repr__, and
    so must the check of whether the publisher's repr is Celery's own."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    args = (Unprintable(),)
    stored = request(args, {}, argsrepr=saferepr(args), kwargsrepr=saferepr({}))
    assert "Unprintable" in json.dumps(stored)


def test_a_publishers_own_reprs_replace_the_arguments() -> None:
    stored = request((1,), {"card": "4242"}, argsrepr="(1,)", kwargsrepr="{'card': '****'}")
    assert stored == {"argsrepr": "(1,)", "kwargsrepr": "{'card': '****'}"}
    only_args = request(("secret",), {}, argsrepr="('…',)")
    assert only_args == {"argsrepr": "('…',)", "kwargsrepr": None}


def test_a_publishers_kwargsrepr_naming_only_the_keys_hides_the_values() -> None:
    """A publisher may show which keyword arguments it gave but not their values: a tuple of
    the keys is its own repr, not Celery's (whose repr of kwargs is the dict's)."""
    kwargs = {"card": "4242 4242 4242 4242"}
    stored = request((), kwargs, kwargsrepr=saferepr(tuple(kwargs)))
    assert stored == {"argsrepr": None, "kwargsrepr": "('card',)"}


def test_secret_looking_keys_are_redacted_at_any_depth_and_in_any_case() -> None:
    kwargs = {
        "Password": "p1",
        "nested": {"api_key": "k1", "list": [{"token": "t1"}, ("x", {"Authorization": "a1"})]},
        "keep": ["password", {"other": 1}],
        3: "not a string key",
    }
    assert request((), kwargs)["kwargs"] == {
        "Password": "***",
        "nested": {"api_key": "***", "list": [{"token": "***"}, ["x", {"Authorization": "***"}]]},
        "keep": ["password", {"other": 1}],
        "3": "not a string key",
    }


def test_a_task_or_the_settings_may_keep_no_arguments_or_result() -> None:
    off = Settings.load({"taskjobs_store_args": False, "taskjobs_store_results": False})
    assert request_text(off, TASK, (1,), {}, None, None) == ""
    assert result_text(off, TASK, 1) == ""
    own_on = SimpleNamespace(taskjobs_store_args=True, taskjobs_store_results=True)
    assert request_text(off, own_on, (1,), {}, None, None) == '{"args": [1], "kwargs": {}}'
    assert result_text(off, own_on, 1) == "1"
    own_off = SimpleNamespace(taskjobs_store_args=False, taskjobs_store_results=False)
    assert request_text(SETTINGS, own_off, (1,), {}, None, None) == ""
    assert result_text(SETTINGS, own_off, 1) == ""


def test_results_are_json_and_an_async_result_its_id_tuple() -> None:
    assert result_text(SETTINGS, TASK, {"a": [1, None]}) == '{"a": [1, null]}'
    assert result_text(SETTINGS, TASK, None) == "null"
    nested = AsyncResult("child", parent=AsyncResult("parent"))
    assert json.loads(result_text(SETTINGS, TASK, nested)) == [
        ["child", [["parent", None], None]],
        None,
    ]


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def test_json_text_is_what_celerys_json_serializer_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {
        "text": "é\u2028",
        "numbers": [1, 2.5, -0.0, 10**30],
        "nothing": None,
        "when": dt.datetime(2026, 12, 7, 6, 30, 1, 250, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 12, 7),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": decimal.Decimal("1.50"),
        "raw": b"\xff\x00",
        "nested": ({"a": (1, 2)},),
    }
    assert json_text(value) == kombu_dumps(value)
    # A type registered with kombu after taskjobs was imported is encoded as kombu does (kombu's
    # registry is copied first, so that the registration ends with this test).
    monkeypatch.setattr(kombu_json, "_encoders", dict(kombu_json._encoders))
    monkeypatch.setattr(kombu_json, "_decoders", dict(kombu_json._decoders))
    kombu_json.register_type(
        Money, "test-money", lambda money: money.cents, lambda cents: Money(cents)
    )
    assert json_text([Money(150)]) == kombu_dumps([Money(150)])
    assert json.loads(json_text([Money(150)])) == [{"__type__": "test-money", "__value__": 150}]


def test_what_json_cannot_encode_is_stored_as_its_repr() -> None:
    assert json_text({1, 2}) in ('"{1, 2}"', '"{2, 1}"')
    assert json_text(SimpleNamespace(a=1)) == '"namespace(a=1)"'


def test_each_text_is_cut_at_its_own_limit_with_a_marker() -> None:
    assert capped("abc", 3) == "abc"
    assert capped("abcd", 3) == "abc…[truncated by taskjobs: 4 characters in all]"
    small = Settings.load({"taskjobs_max_request": 10, "taskjobs_max_result": 20})
    long = "x" * 100
    full_request, full_result = json.dumps({"args": [long], "kwargs": {}}), json.dumps(long)
    assert request_text(small, TASK, (long,), {}, None, None) == (
        f"{full_request[:10]}…[truncated by taskjobs: {len(full_request)} characters in all]"
    )
    assert result_text(small, TASK, long) == (
        f"{full_result[:20]}…[truncated by taskjobs: {len(full_result)} characters in all]"
    )


def raised(exception: BaseException) -> BaseException:
    def inner() -> None:
        raise exception

    try:
        inner()  # two frames in the traceback
    except BaseException as caught:  # noqa: BLE001 - any exception, with its traceback
        return caught
    raise AssertionError("unreachable")


def test_a_failure_is_its_type_message_and_traceback() -> None:
    error = raised(ValueError("bad value"))
    text = failure_text(error, error.__traceback__, None)
    headline, trace = text.split("\n", 1)
    assert headline == "ValueError: bad value"
    assert trace == "".join(traceback.format_tb(error.__traceback__)).rstrip()
    assert trace.startswith("  File ") and __file__ in trace


def test_celerys_formatted_traceback_is_preferred_and_its_end_trimmed() -> None:
    einfo = SimpleNamespace(traceback="Traceback (most recent call last):\n  celery's\n\n")
    error = raised(KeyError("k"))
    text = failure_text(error, error.__traceback__, einfo)
    assert text == "KeyError: 'k'\nTraceback (most recent call last):\n  celery's"


def test_a_failure_without_a_traceback_is_its_headline() -> None:
    assert failure_text(RuntimeError("no trace"), None, None) == "RuntimeError: no trace"
    assert failure_text(RuntimeError("x"), None, SimpleNamespace(traceback="")) == "RuntimeError: x"


def test_lost_workers_and_time_limits_say_what_happened() -> None:
    lost = failure_text(WorkerLostError("signal 9 (SIGKILL)"), None, None)
    assert lost == "worker lost: the process running the task died (signal 9 (SIGKILL))"
    hard = failure_text(TimeLimitExceeded(5.0), None, None)
    assert hard == "hard time limit exceeded: the task was killed after 5.0s"
    assert failure_text(TimeLimitExceeded(), None, None) == (
        "hard time limit exceeded: the task was killed"
    )
    soft = failure_text(SoftTimeLimitExceeded("after 2s"), None, None)
    assert soft == "soft time limit exceeded: SoftTimeLimitExceeded: after 2s"
    assert failure_text(SoftTimeLimitExceeded(), None, None) == (
        "soft time limit exceeded: SoftTimeLimitExceeded"  # as Celery raises it
    )
