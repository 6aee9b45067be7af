"""The recorder: tracking writes that outlive a store outage, and optional batching.

Direct mode: tracking writes go straight to the store while it answers; while it does not,
they queue in a bounded in-memory buffer that a background thread writes out, in order, once
the store is back. A task, a publish or the worker's main loop never waits for a database that
is down for longer than one connection attempt.

Batched mode: every write queues, and the background thread writes what has queued every few
milliseconds (or as soon as a batch is full) in one transaction, with the same statements, each
run for many rows at once, and so the same ordering guarantees. Faster, at a price: what is
queued when a process is killed is lost (a clean stop writes it out first). Grouped mode (the
default) is batched mode in which a task's end waits for its commit (``Mode.ends_committed``).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Protocol, TypeAlias

from taskjobs.errors import StoreError
from taskjobs.lifecycle import Event, Note

logger = logging.getLogger("taskjobs")

# Writes kept while the store is unreachable; past this, the oldest are dropped (and counted).
DEFAULT_CAPACITY = 10_000
# Seconds between two attempts to reach the store again: the first, and the longest.
FIRST_RETRY, LONGEST_RETRY = 0.5, 5.0
# Seconds a stopping process spends writing out what is still buffered.
DRAIN_TIMEOUT = 5.0
# Most writes in one transaction (a batch, or a buffer being written out after an outage).
BATCH_SIZE = 500
# Seconds a write waits in batched mode before its batch is written.
DEFAULT_BATCH_INTERVAL = 0.05
# Seconds a task's end waits for its commit in the "grouped" mode before the task goes on
# anyway (its end stays queued): a slow store delays tasks by at most this.
END_COMMIT_TIMEOUT = 5.0


# What a recorder writes: a lifecycle event, or a note added to a job's messages.
Change: TypeAlias = Event | Note


@dataclasses.dataclass(frozen=True)
class Mode:
    """How a recorder writes: directly, or in batches every ``interval`` seconds; in batches,
    with ``ends_committed``, a task's end is committed before the task returns."""

    batched: bool = False
    interval: float = DEFAULT_BATCH_INTERVAL
    ends_committed: bool = False


class ChangeStore(Protocol):
    """What a recorder needs of a store: apply a change, or many in one transaction."""

    def apply(self, change: Change) -> object: ...

    def apply_all(self, changes: Sequence[Change]) -> None: ...


class Recorder:
    """Applies tracking changes to one store, now or from a buffer, in one write mode."""

    def __init__(
        self, store: ChangeStore, mode: Mode = Mode(), capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self.store = store
        self.mode = mode
        self.capacity = capacity
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self.buffer: collections.deque[Change] = collections.deque()
        self.lock = threading.Lock()
        # Notified (under ``lock``) whenever the writer has taken writes off the queue.
        self.emptied = threading.Condition(self.lock)
        # Writes ever queued, and how many of them are written or dropped: a write queued as
        # the n-th is done once ``done`` reaches n (the queue is written in order).
        self.queued = self.done = 0
        # Whether the writer is waiting for an unreachable store.
        self.outage = False
        self.kick = threading.Event()
        self.flusher: threading.Thread | None = None
        self.dropped = 0

    def after_fork(self) -> None:
        """A forked child starts empty: what the parent buffered, the parent writes."""
        self._reset()

    def submit(self, *changes: Change, end: bool = False, commit: bool = False) -> None:
        """Apply ``changes`` now, in one transaction, or queue them in order (batched mode, or
        the store is unreachable). A task's ``end`` in a mode that commits ends, and changes
        to ``commit`` in any mode (a publish in the "sync" mode), return once committed (at
        most ``END_COMMIT_TIMEOUT`` seconds; at once during an outage)."""
        with self.lock:
            if self.mode.batched or self.buffer:  # direct mode: a buffer means the store is down
                for change in changes:
                    self._enqueue(change)
                ticket = self.queued
                if (commit or (end and self.mode.ends_committed)) and not self.outage:
                    self._wait_done(ticket, END_COMMIT_TIMEOUT)
                elif len(self.buffer) >= BATCH_SIZE:
                    self.kick.set()
                return
        try:
            if len(changes) == 1:
                self.store.apply(changes[0])
            else:
                self._perform(list(changes))
        except StoreError as exc:
            if not exc.retryable:
                raise
            with self.lock:
                first = not self.buffer
                for change in changes:
                    self._enqueue(change)
            if first:
                logger.warning(
                    "taskjobs: job store unreachable (%s); buffering tracking writes in memory "
                    "(at most %d) until it is back",
                    exc, self.capacity,
                )  # fmt: skip

    def _enqueue(self, change: Change) -> None:
        """Queue ``change`` (lock held); drop the oldest when full, saying which."""
        if len(self.buffer) >= self.capacity:
            lost = self.buffer.popleft()
            self.dropped += 1
            self.done += 1
            logger.error(
                "taskjobs: tracking buffer full (%d writes): dropped %s; "
                "%d write(s) dropped since this process started",
                self.capacity, lost, self.dropped,
            )  # fmt: skip
        self.buffer.append(change)
        self.queued += 1
        if self.flusher is None or not self.flusher.is_alive():
            self.flusher = threading.Thread(target=self._flush, name="taskjobs-writer", daemon=True)
            # A writer never waits for queued writes to settle (it is the one writing them).
            self.flusher.taskjobs_writer = True  # type: ignore[attr-defined]
            self.flusher.start()

    def _flush(self) -> None:
        """Write the queue out, a batch per transaction, until it is empty (direct mode) or for
        the life of the process (batched mode); wait and retry while the store is down."""
        delay = FIRST_RETRY
        self.outage = not self.mode.batched  # direct mode: a queue exists only in an outage
        written = 0
        while True:
            if self.mode.batched:
                self.kick.wait(self.mode.interval)
                self.kick.clear()
            with self.lock:
                chunk = list(itertools.islice(self.buffer, BATCH_SIZE))
            if not chunk:
                if self.mode.batched:
                    continue
                break
            try:
                self._perform(chunk)
            except StoreError as exc:  # only errors worth retrying get here
                if not self.outage:
                    written = 0
                    logger.warning("taskjobs: job store unreachable (%s); will retry", exc)
                self.outage = True
                # A flush asked for meanwhile makes one retry at once; used up, it must not
                # turn the backoff into a busy loop for the rest of the outage.
                self.kick.wait(delay)
                self.kick.clear()
                delay = min(delay * 2, LONGEST_RETRY)
                continue
            with self.lock:
                for change in chunk:
                    if self.buffer and self.buffer[0] is change:
                        self.buffer.popleft()
                        self.done += 1
                empty = not self.buffer
                self.emptied.notify_all()
            written += len(chunk)
            if self.outage and empty:
                logger.warning(
                    "taskjobs: job store reachable again; %d buffered write(s) written", written
                )
                self.outage = False
            delay = FIRST_RETRY

    def _perform(self, chunk: list[Change]) -> None:
        """Apply ``chunk`` in one transaction; if the store refuses one change, apply them
        one by one so that only that change is dropped (and logged with what it was)."""
        try:
            self.store.apply_all(chunk)
            return
        except StoreError as exc:
            if exc.retryable:
                raise
        except Exception:  # noqa: BLE001 - a bad change: find it below
            pass
        for change in chunk:
            try:
                self.store.apply(change)
            except StoreError as exc:
                if exc.retryable:
                    raise
                logger.error("taskjobs: dropped %s: %s", change, exc)
            except Exception:
                logger.exception("taskjobs: dropped %s", change)

    def _wait_done(self, ticket: int, timeout: float, *, in_outage: bool = False) -> None:
        """Have the writer write out the queue up to the ``ticket``-th write, waiting at most
        ``timeout`` seconds (lock held); during an outage, only if ``in_outage``. The writer
        itself never waits for itself."""
        if threading.current_thread() is self.flusher:
            return
        deadline = time.monotonic() + timeout
        while self.done < ticket and (in_outage or not self.outage):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.kick.set()
            self.emptied.wait(min(left, 0.1))

    def flush(self, timeout: float) -> int:
        """Have the writer write out what is queued now, waiting at most ``timeout`` seconds;
        returns how many of those writes are still queued. Writes queued meanwhile (a busy
        process queues all the time) are not waited for. The writer never waits for itself."""
        if threading.current_thread() is self.flusher:
            return len(self.buffer)
        with self.lock:
            ticket = self.queued
            self._wait_done(ticket, timeout, in_outage=True)
            return max(ticket - self.done, 0)

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> int:
        """Write out what is queued, for at most ``timeout`` seconds; returns how many writes
        are still queued (and so lost if the process exits now)."""
        left = self.flush(timeout)
        if left:
            logger.error(
                "taskjobs: %d tracking write(s) could not be written before this process "
                "stopped: the job store was unreachable",
                left,
            )
        return left


# Every recorder of this process, for the hooks at exit and fork (trackers own them).
_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def drain_all(timeout: float = DRAIN_TIMEOUT) -> int:
    """Write out what every recorder queued, within ``timeout`` seconds; returns what is left."""
    return sum(recorder.drain(timeout) for recorder in list(_live))


def _after_fork() -> None:
    for recorder in list(_live):
        recorder.after_fork()


os.register_at_fork(after_in_child=_after_fork)
# A publisher or worker that exits normally writes out what it queued first.
atexit.register(drain_all)
