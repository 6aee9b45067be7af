"""The recorder: writes go straight through, or wait in a bounded buffer while the store is down."""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence

import pytest

import taskjobs.store.store as store_module
from taskjobs.celery import recorder as recording
from taskjobs.celery.recorder import Change, Mode, Recorder
from taskjobs.errors import StoreError
from taskjobs.lifecycle import Note
from taskjobs.model import utcnow
from taskjobs.store import Store
from tests.waiting import wait_for

BATCHED = Mode(batched=True, interval=0.01)


class FlakyStore:
    """Fails with a retryable error while ``down`` is set; records what it wrote."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.written: list[str] = []
        self.lock = threading.Lock()
        self.batches = 0
        self.refused = 0  # writes attempted while down
        self.sizes: list[int] = []  # writes in each batch that committed

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self.batches += 1
        before = len(self.written)
        try:
            yield
        except BaseException:
            del self.written[before:]  # rolled back whole, as a transaction is
            raise
        self.sizes.append(len(self.written) - before)

    def apply_all(self, changes: Sequence[Change]) -> None:
        """The changes in one transaction, as the job store applies them."""
        with self.batch():
            for change in changes:
                self.apply(change)

    def apply(self, change: Change) -> None:
        if change.job_id == "bad":
            raise StoreError("value too long", retryable=False)
        if change.job_id == "broken":
            raise ValueError("boom")
        if self.down.is_set():
            self.refused += 1
            raise StoreError("database unreachable", retryable=True)
        with self.lock:
            self.written.append(change.job_id)


def unseen(recorder: Recorder) -> Recorder:
    """``recorder``, out of reach of ``drain_all``: a worker another test started may still be
    shutting down in a thread of this process, and its drain would write this test's queue."""
    recording._live.discard(recorder)
    return recorder


def note(job_id: str) -> Note:
    """A change for job ``job_id`` (any change: the recorder treats them alike)."""
    return Note(job_id, "test note", utcnow())


def logged(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= level]


def test_writes_go_straight_through_while_the_store_answers() -> None:
    store = FlakyStore()
    recorder = Recorder(store)
    recorder.submit(note("a"))
    assert store.written == ["a"] and not recorder.buffer and recorder.flusher is None


def test_changes_submitted_together_commit_together_or_queue_together() -> None:
    store = FlakyStore()
    recorder = Recorder(store)
    recorder.submit(note("a"), note("b"))
    assert (store.written, store.sizes, recorder.flusher) == (["a", "b"], [2], None)
    # A change the store refuses is dropped alone: the other is still written.
    recorder.submit(note("bad"), note("c"))
    assert store.written == ["a", "b", "c"]
    store.down.set()
    recorder.submit(note("d"), note("e"))
    assert [change.job_id for change in recorder.buffer] == ["d", "e"]
    store.down.clear()
    assert recorder.flush(5) == 0 and store.written[-2:] == ["d", "e"]


def test_an_outage_buffers_in_order_and_the_buffer_is_written_once_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "FIRST_RETRY", 0.05)
    monkeypatch.setattr(recording, "LONGEST_RETRY", 0.2)
    store = FlakyStore()
    recorder = Recorder(store)
    store.down.set()
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        for label in "abc":
            recorder.submit(note(label))
        assert store.written == [] and len(recorder.buffer) == 3
        wait_for(lambda: store.refused >= 3, what="the writer to retry, backing off")
        store.down.clear()
        # The writer retries by itself: no drain, no new write needed.
        wait_for(lambda: store.written == ["a", "b", "c"], timeout=10,
                 what="the buffered writes to land once the store is back")  # fmt: skip
        assert recorder.drain(timeout=10) == 0
        # The writer says so once its queue is empty, just after drain() saw it empty.
        wait_for(lambda: len(logged(caplog)) == 2, what="the writer to say the store is back")
    assert store.written == ["a", "b", "c"]
    assert logged(caplog) == [
        "taskjobs: job store unreachable (database unreachable); buffering tracking writes in "
        "memory (at most 10000) until it is back",
        "taskjobs: job store reachable again; 3 buffered write(s) written",
    ]
    assert recorder.flusher is not None and recorder.flusher.daemon, "would hold the exit"
    assert recorder.flusher.name == "taskjobs-writer"


def test_writes_submitted_once_the_store_is_back_wait_behind_the_buffered_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store answers again before the writer retried: a new write must not overtake the
    ones queued during the outage (a job's end would land before its start)."""
    monkeypatch.setattr(recording, "FIRST_RETRY", 30.0)  # the writer retries when kicked
    store = FlakyStore()
    recorder = unseen(Recorder(store))
    store.down.set()
    recorder.submit(note("a"))
    recorder.submit(note("b"))
    wait_for(lambda: store.refused, what="the writer's first attempt")
    store.down.clear()
    recorder.submit(note("c"))
    assert store.written == [], "c was written before the buffered a and b"
    assert recorder.drain(timeout=10) == 0
    assert store.written == ["a", "b", "c"]


def test_a_full_buffer_drops_the_oldest_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    recorder = Recorder(store, capacity=2)
    store.down.set()
    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        for label in "abcd":
            recorder.submit(note(label))
    assert recorder.dropped == 2 and [w.job_id for w in recorder.buffer] == ["c", "d"]
    assert logged(caplog) == [
        "taskjobs: tracking buffer full (2 writes): dropped the progress note of job a "
        "('test note'); 1 write(s) dropped since this process started",
        "taskjobs: tracking buffer full (2 writes): dropped the progress note of job b "
        "('test note'); 2 write(s) dropped since this process started",
    ]
    store.down.clear()
    recorder.drain(timeout=10)
    assert store.written == ["c", "d"]


def test_a_write_the_store_refuses_is_not_retried() -> None:
    recorder = Recorder(FlakyStore())

    with pytest.raises(StoreError, match="too long"):
        recorder.submit(note("bad"))
    assert not recorder.buffer


def test_drain_reports_what_could_not_be_written(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    recorder = Recorder(store)
    store.down.set()
    recorder.submit(note("a"))
    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        assert recorder.drain(timeout=0.2) == 1
    assert logged(caplog, logging.ERROR) == [
        "taskjobs: 1 tracking write(s) could not be written before this process stopped: the "
        "job store was unreachable"
    ]
    store.down.clear()
    recorder.drain(timeout=10)


def test_a_forked_child_starts_with_an_empty_buffer() -> None:
    store = FlakyStore()
    recorder = Recorder(store)
    store.down.set()
    recorder.submit(note("a"))
    recorder.after_fork()
    assert not recorder.buffer and recorder.dropped == 0


def test_batched_mode_queues_every_write_and_writes_them_in_order() -> None:
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    for label in "abcdef":
        recorder.submit(note(label))
    assert recorder.drain(timeout=10) == 0
    assert store.written == list("abcdef")
    assert 1 <= store.batches <= 6


def test_a_bad_write_in_a_batch_is_dropped_alone(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        recorder.submit(note("a"))
        recorder.submit(note("bad"))
        recorder.submit(note("c"))
        assert recorder.drain(timeout=10) == 0
    assert store.written == ["a", "c"]
    assert logged(caplog) == [
        "taskjobs: dropped the progress note of job bad ('test note'): value too long"
    ]


def test_every_recorder_is_drained_at_exit_and_emptied_in_a_forked_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process-wide hooks: ``drain_all`` (at exit) writes out every store's queue and
    counts what is left; a forked child starts with every queue empty."""
    monkeypatch.setattr(recording, "_live", weakref.WeakSet())  # keep this process's own
    answering, down = FlakyStore(), FlakyStore()
    recorders = [Recorder(answering), Recorder(down)]
    for store, recorder in zip((answering, down), recorders, strict=True):
        store.down.set()
        recorder.submit(note("queued"))
    answering.down.clear()
    assert recording.drain_all(timeout=0.5) == 1  # the write for the store still down
    assert answering.written == ["queued"]
    recording._after_fork()
    assert not recorders[1].buffer


def test_batched_writes_land_within_the_interval_without_being_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    with caplog.at_level(logging.INFO, logger="taskjobs"):
        Recorder(store, BATCHED).submit(note("a"))
        wait_for(lambda: store.written == ["a"], timeout=10, what="the batch to be written")
    assert logged(caplog, logging.INFO) == [], "nothing to say when the store answers"


def test_a_batch_holds_at_most_batch_size_writes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(recording, "BATCH_SIZE", 2)
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    store.down.set()  # everything queues up while the store is down
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        for label in "abcde":
            recorder.submit(note(label))
        wait_for(lambda: store.refused, what="the writer's first attempt")
        store.down.clear()
        assert recorder.drain(timeout=10) == 0
        back = "taskjobs: job store reachable again; 5 buffered write(s) written"
        wait_for(lambda: back in logged(caplog), what="the writer to say the store is back")
    assert store.written == list("abcde") and max(store.sizes) == 2


def test_an_outage_in_batched_mode_is_logged_once_and_its_end_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        store.down.set()
        recorder.submit(note("a"))
        recorder.submit(note("b"))
        wait_for(lambda: store.refused >= 2, what="two failed attempts")
        store.down.clear()
        assert recorder.drain(timeout=10) == 0
        recorder.submit(note("c"))  # business as usual: nothing more to say
        wait_for(lambda: store.written == ["a", "b", "c"], what="the next batch")
    assert logged(caplog) == [
        "taskjobs: job store unreachable (database unreachable); will retry",
        "taskjobs: job store reachable again; 2 buffered write(s) written",
    ]


def test_a_write_that_fails_unexpectedly_is_dropped_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        recorder.submit(note("broken"))
        recorder.submit(note("ok"))
        assert recorder.drain(timeout=10) == 0
    assert store.written == ["ok"]
    (record,) = caplog.records
    assert record.getMessage() == "taskjobs: dropped the progress note of job broken ('test note')"
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


class GatedStore(FlakyStore):
    """Holds its first batch open until ``gate`` is set, saying when it is inside."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.gate = threading.Event(), threading.Event()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with super().batch():
            if not self.inside.is_set():
                self.inside.set()
                assert self.gate.wait(30)
            yield


def test_writes_queued_while_a_batch_runs_survive_the_buffer_overflowing() -> None:
    """The buffer drops its oldest write to make room while the writer is performing a batch
    that holds that write: once the batch commits, the writer must take out of the buffer only
    what it performed, never a newer write."""
    store = GatedStore()
    recorder = Recorder(store, BATCHED, capacity=2)
    recorder.submit(note("a"))
    recorder.submit(note("b"))
    assert store.inside.wait(30)  # the writer is performing [a, b]
    recorder.submit(note("c"))  # the buffer, full, drops a (already being written)
    store.gate.set()
    assert recorder.drain(timeout=10) == 0
    assert store.written == ["a", "b", "c"]


def test_a_second_outage_is_ridden_out_like_the_first() -> None:
    """The writer of a batched process lives on after an outage: the next one must be retried
    by itself again, not wait for the process to exit."""
    store = FlakyStore()
    recorder = Recorder(store, BATCHED)
    for label in "ab":
        store.down.set()
        refused = store.refused
        recorder.submit(note(label))
        wait_for(lambda r=refused: store.refused > r, what="a failed attempt")
        store.down.clear()
        wait_for(lambda n=label: n in store.written, timeout=10,
                 what=f"{label} to land once the store is back")  # fmt: skip


def test_a_full_batch_is_written_at_once_not_at_the_end_of_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recording, "BATCH_SIZE", 2)
    store = FlakyStore()
    recorder = Recorder(store, Mode(batched=True, interval=60.0))
    recorder.submit(note("a"))
    recorder.submit(note("b"))  # the batch is full
    wait_for(lambda: store.written == ["a", "b"], timeout=10, what="the full batch to be written")


class MeetingStore(FlakyStore):
    """Down; its first two writes wait for each other, so that they fail together."""

    def __init__(self) -> None:
        super().__init__()
        self.down.set()
        self.meeting = threading.Barrier(2, timeout=30)
        self.arrived = 0

    def apply(self, change: Change) -> None:
        with self.lock:
            self.arrived += 1
            meets = self.arrived <= 2
        if meets:
            self.meeting.wait()
        super().apply(change)


def test_threads_that_meet_an_outage_together_announce_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Task threads writing as the store goes down all queue their writes; the outage is
    announced once, not once per thread."""
    store = MeetingStore()
    recorder = Recorder(store)
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        threads = [threading.Thread(target=recorder.submit, args=(note(label),)) for label in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(change.job_id for change in recorder.buffer) == ["a", "b"]
        assert logged(caplog) == [
            "taskjobs: job store unreachable (database unreachable); buffering tracking writes "
            "in memory (at most 10000) until it is back"
        ]
    store.down.clear()
    assert recorder.drain(timeout=10) == 0
    assert sorted(store.written) == ["a", "b"]


class ExpectingStore(GatedStore):
    """As the job store does, its writes first wait (at most ``SETTLE_TIMEOUT``) for the queued
    writes it was told to expect, the process's publishes; a writer of taskjobs' own never does."""

    def __init__(self) -> None:
        super().__init__()
        self._expected: weakref.WeakSet[Recorder] = weakref.WeakSet()

    expect = Store.expect
    settle = Store.settle

    def apply(self, change: Change) -> None:
        self.settle()
        super().apply(change)


def test_a_workers_writes_do_not_wait_for_the_publishes_being_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publishes' writer is inside a batch (a slow commit, SQLite's lock): the writer of
    the worker's events goes on writing; it never waits for the publishes its store's readers
    wait for (it would hold its own batch open meanwhile)."""
    monkeypatch.setattr(store_module, "SETTLE_TIMEOUT", 60.0)
    store = ExpectingStore()
    publishes = Recorder(store, BATCHED)
    store.expect(publishes)
    publishes.submit(note("published"))
    assert store.inside.wait(30)  # the publishes' writer is performing its batch
    Recorder(store, BATCHED).submit(note("event"))
    wait_for(lambda: store.written == ["event"], timeout=10, what="the worker's event")
    store.gate.set()
    assert publishes.drain(timeout=10) == 0
    assert store.written == ["event", "published"]


def test_a_long_queue_of_publishes_is_written_within_what_a_read_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read waits at most ``SETTLE_TIMEOUT`` for this process's queued publishes (a large
    group, say), written a batch per transaction: the writer must go on from one batch to the
    next at once, not wait for its interval (60 s here) or the read misses the last ones."""
    monkeypatch.setattr(recording, "BATCH_SIZE", 2)
    store = GatedStore()
    publishes = Recorder(store, Mode(batched=True, interval=60.0))
    labels = [f"p{i}" for i in range(12)]
    for label in labels:
        publishes.submit(note(label))
    assert store.inside.wait(30)  # the writer holds its first batch open meanwhile
    store.gate.set()
    assert publishes.flush(store_module.SETTLE_TIMEOUT) == 0
    assert store.written == labels


def test_a_flush_asked_during_an_outage_retries_once_then_backs_off_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recording, "FIRST_RETRY", 30.0)
    monkeypatch.setattr(recording, "LONGEST_RETRY", 30.0)
    store = FlakyStore()
    recorder = Recorder(store)
    store.down.set()
    recorder.submit(note("a"))
    wait_for(lambda: store.refused >= 2, what="the writer's first retry")
    assert recorder.flush(0.05) == 1  # asked to write now: it tries at once, and cannot
    wait_for(lambda: store.refused >= 3, what="the retry the flush asked for")
    # The request is used up: the writer waits its 30 s again instead of retrying at once,
    # forever (a busy loop against a database that is down).
    wait_for(lambda: not recorder.kick.is_set(), what="the writer to wait again")
    assert store.refused < 10
    store.down.clear()
    assert recorder.drain(timeout=10) == 0 and store.written == ["a"]


GROUPED = Mode(batched=True, interval=60.0, ends_committed=True)


def test_in_grouped_mode_an_end_returns_once_it_and_what_queued_before_it_are_written() -> None:
    store = FlakyStore()
    recorder = unseen(Recorder(store, GROUPED))
    recorder.submit(note("start"))
    assert store.written == [], "queued for the batch, a minute away"
    recorder.submit(note("end"), end=True)
    assert store.written == ["start", "end"]
    recorder.submit(note("later"))
    assert store.written == ["start", "end"]
    assert recorder.drain(timeout=10) == 0


def test_in_batched_mode_an_end_waits_for_its_batch_like_any_write() -> None:
    store = FlakyStore()
    recorder = unseen(Recorder(store, Mode(batched=True, interval=60.0)))
    recorder.submit(note("end"), end=True)
    assert store.written == []
    assert recorder.drain(timeout=10) == 0


def test_in_grouped_mode_an_end_does_not_wait_through_an_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the store is known to be down, a task's end queues and the task goes on."""
    monkeypatch.setattr(recording, "FIRST_RETRY", 30.0)  # the writer retries when kicked
    store = FlakyStore()
    recorder = unseen(Recorder(store, GROUPED))
    store.down.set()
    recorder.submit(note("first"), end=True)  # meets the outage: waits for the failed attempt
    assert recorder.outage and store.written == []
    attempts = store.refused
    recorder.submit(note("second"), end=True)
    assert store.refused == attempts, "no new attempt was waited for"
    store.down.clear()
    assert recorder.drain(timeout=10) == 0
    assert store.written == ["first", "second"]


class BusyStore(FlakyStore):
    """A store in a busy process: each batch it writes, the process queues another write."""

    recorder: Recorder

    def apply_all(self, changes: Sequence[Change]) -> None:
        super().apply_all(changes)
        if len(self.written) < 1000:
            self.recorder.submit(note(f"more-{len(self.written)}"))


def test_a_flush_waits_for_what_was_queued_before_it_not_for_the_queue_to_empty() -> None:
    """A read in a busy process (its writes keep queuing) waits for its own process's earlier
    writes, not for a queue that is never empty."""
    store = BusyStore()
    recorder = store.recorder = unseen(Recorder(store, Mode(batched=True, interval=60.0)))
    recorder.submit(note("before"))
    assert recorder.flush(timeout=3.0) == 0, "every write queued before the flush is written"
    assert "before" in store.written
    assert recorder.buffer, "what queued while it was written is left for the next batch"
