"""Waiting for a job to reach a state: poll the store with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from taskjobs.api.job import getJob


def wait_for(
    condition: Callable[[], Any], timeout: float = 20, what: str | Callable[[], str] = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds,
    saying what was awaited (``what`` may be a function, to describe the state at that time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout}s waiting for {what() if callable(what) else what}"
            )
        time.sleep(0.02)


def job_in(task_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(
        lambda: getJob(task_id, state), timeout, f"job {task_id} to be {state}"
    )
    return result
