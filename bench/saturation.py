"""How many tracked tasks per second one PostgreSQL takes: writer processes replaying a worker's
exact writes (each task's publish, receipt, start and success, as the Celery receivers build
them) at one database, 1 to N at a time, in each write mode; the rate at which adding writers
stops adding tasks is where the database saturates on this machine.

    python bench/saturation.py [--writers 1,2,4,8] [--seconds 10] [--modes direct,grouped,batched]
                               [--aggregates on,off]

Besides tasks per second it measures the CPU time PostgreSQL's own processes spend per task
(from /proc), which is what sizes a database server for a target rate. ``--aggregates`` runs
each measurement with the running aggregates kept (the triggers log each change of a job's
figures, and a folder process folds them every two seconds, as a worker's heartbeat does) and,
interleaved, on a second database whose triggers are dropped: what the aggregates cost the
writes. Results go to bench/results/saturation-<time>.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import save_results  # noqa: E402
from taskjobs import lifecycle  # noqa: E402
from taskjobs.celery.recorder import Mode, Recorder  # noqa: E402
from taskjobs.model import utcnow  # noqa: E402
from taskjobs.store import Store  # noqa: E402
from taskjobs.store.tables import jobs, stat_log, stats  # noqa: E402
from tests.services import scratch_database  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# Writes a batched writer may hold before its producer waits (a worker cannot outrun its
# writer by more than this either: past its capacity the recorder drops and counts).
BACKLOG = 2000
# Seconds between two folds of the running aggregates (as ``heartbeat.FOLD_EVERY``).
FOLD_EVERY = 2.0
# The triggers that log the changes of jobs' figures (migration 0011).
TRIGGERS = ("taskjobs_stat_log_insert", "taskjobs_stat_log_update", "taskjobs_stat_log_delete")


def task_events(job_id: str, worker: str) -> list[lifecycle.Event]:
    """The four writes of one successful task, as the receivers build them."""
    common = {
        "name": "bench.noop",
        "user": None,
        "request": '{"args": [], "kwargs": {}}',
        "queue": "bench",
        "lineage": lifecycle.Lineage(root_id=job_id),
        "retries": 0,
    }
    return [
        lifecycle.published(job_id, eta=None, delivery=None, at=utcnow(), **common),
        lifecycle.received(
            job_id, eta=None, worker=worker, redelivered=False, delivery=None, at=utcnow(), **common
        ),
        lifecycle.started(
            job_id,
            worker=worker,
            pid=os.getpid(),
            redelivered=False,
            delivery=None,
            at=utcnow(),
            **common,
        ),
        lifecycle.succeeded(
            job_id,
            name="bench.noop",
            result="null",
            runtime=0.001,
            retries=0,
            delivery=None,
            at=utcnow(),
        ),
    ]


# Each write mode's recorder (None: each event applied directly, as ``direct`` does).
MODES: dict[str, Mode | None] = {
    "direct": None,
    "grouped": Mode(batched=True, interval=0.05, ends_committed=True),
    "batched": Mode(batched=True, interval=0.05),
}


def writer(url: str, mode: str, seconds: float, start: Any, done: Any, release: Any) -> None:
    """Write whole task lifecycles for ``seconds``, directly or through a recorder in ``mode``
    (in ``grouped`` mode each task's end waits for its commit, as a pool process's does); then
    say so, and keep the connections (and so PostgreSQL's backends, whose CPU time is counted)
    until released."""
    store = Store(url)
    recorder_mode = MODES[mode]
    recorder = Recorder(store, recorder_mode) if recorder_mode is not None else None
    worker = f"bench@{os.getpid()}"
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = task_events(str(uuid.uuid4()), worker)
        for event in events:
            if recorder is None:
                store.apply(event)
            else:
                while len(recorder.buffer) > BACKLOG:
                    time.sleep(0.001)
                recorder.submit(event, end=event is events[-1])
    if recorder is not None:
        recorder.drain(60)
    done.put(os.getpid())
    release.wait()
    store.dispose()


def folder(url: str, release: Any) -> None:
    """Fold the logged changes every ``FOLD_EVERY`` seconds until released, as the heartbeat
    thread of a worker does."""
    store = Store(url)
    while not release.wait(FOLD_EVERY):
        store.fold_stats()
    store.fold_stats()
    store.dispose()


def postgres_cpu_seconds() -> float:
    """CPU seconds (user + system) of every postgres process so far."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if not comm.read().startswith("postgres"):
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)
        except OSError:
            continue
        values = fields[1].split()
        total += int(values[11]) + int(values[12]) + int(values[13]) + int(values[14])
    return total / TICKS


def measure(url: str, writers: int, mode: str, seconds: float, aggregates: bool) -> dict[str, Any]:
    store = Store(url)
    with store.engine.begin() as connection:
        for table in (jobs, stat_log, stats):
            connection.execute(sa.delete(table))
    context = multiprocessing.get_context("fork")
    start, release, done = context.Event(), context.Event(), context.Queue()
    processes = [
        context.Process(target=writer, args=(url, mode, seconds, start, done, release))
        for _ in range(writers)
    ]
    if aggregates:
        processes.append(context.Process(target=folder, args=(url, release)))
    for process in processes:
        process.start()
    time.sleep(1)  # the writers connect; the clock starts when they all go
    cpu_before, began = postgres_cpu_seconds(), time.perf_counter()
    start.set()
    for _ in range(writers):
        done.get(timeout=seconds + 120)
    elapsed = time.perf_counter() - began
    cpu = postgres_cpu_seconds() - cpu_before
    release.set()
    for process in processes:
        process.join()
    with store.engine.connect() as connection:
        done = connection.scalar(
            sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status == "finished")
        )
    store.dispose()
    return {
        "writers": writers,
        "mode": mode,
        "aggregates": aggregates,
        "tasks": done,
        "seconds": elapsed,
        "tasks_per_second": done / elapsed,
        "postgres_cpu_ms_per_task": 1000 * cpu / max(done, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--modes", default="direct,grouped,batched")
    parser.add_argument("--aggregates", default="on", help="on, off, or on,off (A/B)")
    args = parser.parse_args()
    counts = [int(n) for n in args.writers.split(",")]
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; known: {', '.join(MODES)}")
    variants = [part == "on" for part in args.aggregates.split(",")]
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database("postgresql", tmp) as with_url,
        scratch_database("postgresql", tmp) as without_url,
    ):
        Store(with_url).upgrade()
        without = Store(without_url)
        without.upgrade()
        with without.engine.begin() as connection:
            for trigger in TRIGGERS:
                connection.exec_driver_sql(f"DROP TRIGGER {trigger} ON taskjobs_jobs")
        without.dispose()
        for mode in args.modes.split(","):
            for count in counts:
                for aggregates in variants:
                    url = with_url if aggregates else without_url
                    result = measure(url, count, mode, args.seconds, aggregates)
                    results.append(result)
                    state = "on " if aggregates else "off"
                    print(
                        f"{mode:>8} {count:>3} writers, aggregates {state}: "
                        f"{result['tasks_per_second']:>8.0f} tasks/s, "
                        f"PostgreSQL {result['postgres_cpu_ms_per_task']:.2f} CPU ms a task",
                        flush=True,
                    )
    for mode in args.modes.split(","):
        for aggregates in variants:
            chosen = [r for r in results if r["mode"] == mode and r["aggregates"] == aggregates]
            rate = max(r["tasks_per_second"] for r in chosen)
            cpu = min(r["postgres_cpu_ms_per_task"] for r in chosen)
            cores = 10_000 * cpu / 1000
            print(
                f"{mode}, aggregates {'on' if aggregates else 'off'}: saturates near "
                f"{rate:,.0f} tasks/s here; at {cpu:.2f} CPU ms a task, 10,000 tasks/s needs "
                f"about {cores:.1f} PostgreSQL cores"
            )
    save_results(
        "saturation",
        {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "seconds": args.seconds,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
