"""The heartbeat's schedule and its failures, on a clock the test moves and a store that only
counts: how often a worker beats, folds and deletes, and what it says when reaping fails."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from taskjobs.celery import heartbeat
from taskjobs.celery.heartbeat import Heart
from taskjobs.errors import StoreError
from taskjobs.settings import Settings


class Clock:
    """Monotonic seconds that pass only while the heart waits, and by a microsecond at each
    reading (as a real clock's do)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now


class Stopping:
    """The heart's stop event: set once ``seconds`` have passed on ``clock`` (or after far more
    waits than that many seconds can take, so that a heart that never waits still stops)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.until = clock, clock.now + seconds
        self.waits = 0

    def is_set(self) -> bool:
        return self.clock.now >= self.until or self.waits > 100_000

    def wait(self, seconds: float) -> bool:
        self.waits += 1
        self.clock.now += seconds
        return self.is_set()


class CountingStore:
    """Answers what a heart asks, counting each request; ``reap`` fails with ``reap_error``."""

    def __init__(self, reap_error: Exception | None = None) -> None:
        self.calls = {"heartbeat": 0, "reap": 0, "fold_stats": 0, "purge": 0}
        self.reap_error = reap_error

    def heartbeat(self, name: str, *, hostname: str | None, pid: int | None, at: datetime) -> None:
        self.calls["heartbeat"] += 1

    def reap(self, **_: Any) -> dict[str, int]:
        self.calls["reap"] += 1
        if self.reap_error is not None:
            raise self.reap_error
        return {}

    def fold_stats(self, *, limit: int | None = None) -> int:
        self.calls["fold_stats"] += 1
        return 0

    def purge(self, **_: Any) -> int:
        self.calls["purge"] += 1
        return 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The heartbeat module's clock, moved by the test (no other module's)."""
    moved = Clock()
    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(monotonic=moved.monotonic))
    return moved


def test_a_heart_beats_folds_and_deletes_each_at_its_own_pace(clock: Clock) -> None:
    """Over two minutes, a worker with a 1.2 s timeout beats every 0.2 s (six beats per
    timeout, so one late beat is never fatal), folds every 2 s and deletes expired jobs once a
    minute: never more often (each is a write to the job store), never less."""
    store = CountingStore()
    settings = Settings.load({"taskjobs_worker_timeout": 1.2, "taskjobs_keep_finished": 3600})
    heart = Heart("celery@paced", settings, lambda: store)  # type: ignore[arg-type, return-value]
    heart.stopping = Stopping(clock, 120.0)  # type: ignore[assignment]
    heart.run()
    beats, folds = store.calls["heartbeat"], store.calls["fold_stats"]
    assert 599 <= beats <= 601, f"{beats} beats in 120 s at one per 0.2 s"
    assert 60 <= folds <= 61, f"{folds} folds in 120 s at one per 2 s"
    assert store.calls["purge"] == 2, "one expiry at the start, one a minute later"
    assert store.calls["reap"] >= beats - 7, "after beating for a timeout, it reaps each beat"


def test_a_failed_look_for_silent_workers_is_logged_and_the_heart_beats_on(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = CountingStore(reap_error=StoreError("database unreachable", retryable=True))
    heart = Heart("celery@judge", Settings.load({"taskjobs_worker_timeout": 1.2}),
                  lambda: store)  # type: ignore[arg-type, return-value]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        heart.beat_and_reap()  # beating from now: it judges no one yet
        clock.now += 1.2
        heart.beat_and_reap()  # a whole timeout later: it looks, and the store fails
        heart.beat_and_reap()
    assert store.calls == {"heartbeat": 3, "reap": 2, "fold_stats": 0, "purge": 0}
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "taskjobs: looking for silent workers failed (worker celery@judge)")
    ] * 2
    assert all(r.exc_info is not None for r in caplog.records), "the traceback says why"


def test_a_heart_with_a_watch_calls_it_every_second_and_beats_on_when_it_fails(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The "batched" mode's look for the ends of pool processes that are gone runs every
    second, whatever the beat's pace; one that fails is logged, and the next runs as planned."""
    store = CountingStore()
    looks: list[float] = []

    def watch() -> None:
        looks.append(clock.now)
        if len(looks) == 3:
            raise StoreError("database unreachable", retryable=True)

    settings = Settings.load({"taskjobs_worker_timeout": 60})
    heart = Heart("celery@watcher", settings, lambda: store, watch=watch)  # type: ignore[arg-type, return-value]
    heart.stopping = Stopping(clock, 30.0)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        heart.run()
    assert 30 <= len(looks) <= 31, f"{len(looks)} looks in 30 s at one a second"
    assert all(0.99 < later - earlier < 1.01 for earlier, later in itertools.pairwise(looks))
    assert [r.getMessage() for r in caplog.records] == [
        "taskjobs: writing the ends of pool processes that are gone failed"
    ]
    assert store.calls["heartbeat"] == 3, "beats at its own pace (every 10 s)"
