"""A tracker: what taskjobs keeps for one Celery app (its settings, store, recorder, heartbeat).

Nothing here is shared between apps: two apps in one process, each with its own database,
write mode and worker timeout, each write and beat as configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskjobs import config
from taskjobs.celery.heartbeat import Heart
from taskjobs.celery.outcomes import KEEP, Outcomes, end_of, unwritten
from taskjobs.celery.recorder import Change, Mode, Recorder
from taskjobs.errors import StoreError
from taskjobs.settings import Settings
from taskjobs.store import Store, store_for

logger = logging.getLogger("taskjobs")


class Tracker:
    """Tracks the tasks of one app: records their changes in its store, in its write mode."""

    def __init__(self, name: str, settings: Settings) -> None:
        # The app's name (``app.main``), for log lines; the tracker holds no reference to it.
        self.name = name
        self.settings = settings  # resolves the app's own store and write mode, once
        # One recorder per store this app has written to (a store that does not answer never
        # holds up another), made on first use; and, in the "async" publish mode, one writer
        # of publishes per store.
        self._recorders: dict[tuple[int, Mode], Recorder] = {}
        self._publishers: dict[int, Recorder] = {}
        self._lock = threading.Lock()
        # The heartbeat of this worker process, once it consumes.
        self.heart: Heart | None = None
        # What this worker's pool processes returned lately (the "batched" mode only).
        self.outcomes = Outcomes()

    def __repr__(self) -> str:
        return f"Tracker({self.name!r}, {self.store!r}, {self.settings.write_mode})"

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """Take new settings; the app's own store is looked up here, once, not at every event
        (a bad URL is refused here, and nothing changes)."""
        own = store_for(settings.database_url) if settings.database_url else None
        self._own_store, self._settings = own, settings
        self._mode = Mode(
            batched=settings.write_mode != "direct",
            interval=settings.batch_interval,
            ends_committed=settings.write_mode == "grouped",
        )

    @property
    def store(self) -> Store:
        """Where this app's jobs are: the store ``configure(url)`` chose, else the app's own
        ``taskjobs_database_url``, else the default store."""
        return config.app_store(self._own_store)

    @property
    def mode(self) -> Mode:
        """How this app's worker-side events are written."""
        return self._mode

    @property
    def ends_queued(self) -> bool:
        """Whether a task's end may still be queued in its process when the task returns (the
        "batched" mode): a process killed then takes it along."""
        return self._mode.batched and not self._mode.ends_committed

    def recorder(self) -> Recorder:
        """The recorder of this app for its store now. One that queues (the "grouped" and
        "batched" modes) is waited for by the store's readers and writers in this process, as
        the writer of publishes is: a task that reads its own job finds it started."""
        store, mode = self.store, self.mode
        key = (id(store), mode)
        found = self._recorders.get(key)
        if found is None:
            with self._lock:
                found = self._recorders.get(key)
                if found is None:
                    found = self._recorders[key] = Recorder(store, mode)
                    if mode.batched:
                        store.expect(found)
        return found

    def publisher(self) -> Recorder:
        """The writer of this app's publishes to its store now (the "async" publish mode):
        what has queued is committed in one transaction every ``publish_interval`` seconds;
        the store's readers and writers in this process wait for it first, so that a job
        published here is found by a read here."""
        store = self.store
        found = self._publishers.get(id(store))
        if found is None:
            with self._lock:
                found = self._publishers.get(id(store))
                if found is None:
                    mode = Mode(batched=True, interval=self.settings.publish_interval)
                    found = Recorder(store, mode)
                    store.expect(found)
                    self._publishers[id(store)] = found
        return found

    def record(self, *changes: Change, end: bool = False, commit: bool = False) -> None:
        """Apply ``changes`` to this app's store, in one transaction, now or from the
        recorder's queue; a task's ``end`` is committed before this returns where the write
        mode says so, and changes to ``commit`` in every mode."""
        self.recorder().submit(*changes, end=end, commit=commit)

    def record_publish(self, change: Change) -> None:
        """Queue what a publish did for this process's writer of publishes (the "async"
        publish mode)."""
        self.publisher().submit(change)

    def drain(self) -> int:
        """Write out what this app's recorders queued; returns how many writes are left."""
        recorders = [*self._publishers.values(), *self._recorders.values()]
        return sum(recorder.drain() for recorder in recorders)

    def start_heartbeat(self, worker: str) -> None:
        """Beat for ``worker`` (this process's node name) in this app's store, once."""
        if self.heart is None:
            with never_raising("the heartbeat", worker):
                watch = self.write_lost_ends if self.ends_queued else None
                self.heart = Heart(worker, self.settings, lambda: self.store, watch=watch)
                self.heart.start()

    def write_lost_ends(self) -> int:
        """Write the ends that pool processes returned but were gone before writing (see
        ``taskjobs.celery.outcomes``), where the store still lacks them; how many."""
        lost = self.outcomes.take_lost(keep=max(KEEP, 4 * self.mode.interval))
        if not lost:
            return 0
        store, known = self.store, True
        try:
            ends = [end for end in lost if unwritten(end, store.get(end.job_id))]
        except StoreError:  # unreadable now: write them all (an end already written stays)
            ends, known = lost, False
        if ends:
            changes = [change for end in ends for change in end_of(end, self.settings, known)]
            self.record(*changes, commit=True)
            logger.warning(
                "taskjobs: pool process(es) %s of app %s were gone before writing the end of "
                "%d job(s) they ran: written from the worker's main process",
                ", ".join(str(pid) for pid in sorted({end.pid for end in ends})), self.name,
                len(ends),
            )  # fmt: skip
        return len(ends)

    def stop_heartbeat(self, reason: str) -> None:
        """Stop beating, and record the worker stopped: its jobs still running end lost."""
        heart, self.heart = self.heart, None
        if heart is not None:
            heart.stop()
            heart.stopped(reason)


@contextmanager
def never_raising(what: str, task_id: Any) -> Iterator[None]:
    """Around one recording: log any failure with the task id, and swallow it (tracking never
    changes a task's outcome)."""
    try:
        yield
    except Exception:
        logger.exception("taskjobs: could not record %s of task %s", what, task_id)
