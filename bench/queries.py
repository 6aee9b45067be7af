"""Query benchmark: taskjobs' own read paths on a store holding 1,000,000 jobs.

    python bench/queries.py [--jobs 1000000] [--databases sqlite,postgresql] [--repeat 20]

Seeds a scratch database per kind (PostgreSQL on 127.0.0.1:5432, a SQLite file) with jobs
spread over 7 days, inserted oldest first (50 task names, 20 users, 10 workers; 90% finished,
5% error, 3% pending, 2% running), then times, through taskjobs' functions: one job by id
(``getJob``), the 100 newest jobs in a state (``getPendingJobs(limit=100)``), a filtered page
(``getJobs(name=, user=, limit=50)``), the next keyset page, ``taskjobs show`` (job and
history) and the full status report over the last 24 hours (``build_report``). Reports medians
and the query plans' index use. Results go to bench/results/queries-<time>.json.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import taskjobs  # noqa: E402
from bench.harness import save_results  # noqa: E402
from taskjobs.api.job import getJob, getJobHistory, getJobs, getPendingJobs  # noqa: E402
from taskjobs.model import utcnow  # noqa: E402
from taskjobs.report import build_report  # noqa: E402
from taskjobs.store import Store  # noqa: E402
from taskjobs.store.tables import jobs, transitions  # noqa: E402
from tests.services import scratch_database  # noqa: E402

BATCH = 20_000
NAMES = [f"proj.tasks.task_{i:02d}" for i in range(50)]
USERS = [f"user{i:02d}" for i in range(20)]
WORKERS = [f"celery@worker-{i}" for i in range(10)]
STATUS_WEIGHTS = {"finished": 90, "error": 5, "pending": 3, "running": 2}
UNENDED_STATUSES = ("pending", "running")


def seed(
    store: Store,
    count: int,
    rng: random.Random,
    *,
    fold: bool = True,
    days: float = 7,
    unended: int | None = None,
    names: Sequence[str] = NAMES,
    workers: Sequence[str] = WORKERS,
) -> list[str]:
    """Insert ``count`` jobs (and one history row each) in batches, then (with ``fold``) fold
    the changes their inserts logged into the running aggregates, as a worker's heartbeat
    would; the jobs span the last ``days``. With ``unended``, only the newest ``unended`` jobs
    may be pending or running (an older job drawn so has finished), as in a live store, whose
    unended jobs are bounded by its workers' slots and its queues' backlog, not by its history.
    ``names`` and ``workers`` are drawn from. Returns a sample of ids."""
    store.upgrade()
    now = utcnow()
    span = timedelta(days=days).total_seconds()
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    sample: list[str] = []
    # As Celery stamps them: a top-level task is its own root; one job in ten is published by
    # the job before it (a child in a workflow), which makes its root theirs.
    celery_states = {"finished": "SUCCESS", "error": "FAILURE", "pending": "PENDING",
                     "running": "STARTED"}  # fmt: skip
    parent: str | None = None
    root: str | None = None
    with store.engine.begin() as connection:
        for start in range(0, count, BATCH):
            rows, steps = [], []
            for index in range(start, min(start + BATCH, count)):
                job_id = str(uuid.UUID(int=rng.getrandbits(128)))
                status = rng.choices(statuses, weights)[0]
                if unended is not None and index < count - unended and status in UNENDED_STATUSES:
                    status = "finished"
                # Oldest first, as a store fills: the logged changes fold in time order.
                created = now - timedelta(seconds=span * (1 - (index + rng.random()) / count))
                wait = rng.expovariate(2.0)
                runtime = rng.lognormvariate(-1.5, 1.0)
                started = created + timedelta(seconds=wait) if status != "pending" else None
                ended = status in ("finished", "error")
                if parent is None or rng.random() >= 0.1:
                    parent, root = None, job_id
                rows.append(
                    {
                        "id": job_id,
                        "name": rng.choice(names),
                        "user": rng.choice(USERS),
                        "request": '{"args": [1, 2], "kwargs": {}}',
                        "status": status,
                        "result": "3" if status == "finished" else None,
                        "worker": rng.choice(workers) if started else None,
                        "created_at": created,
                        "updated_at": created,
                        "started_at": started,
                        "finished_at": started + timedelta(seconds=runtime)
                        if ended and started
                        else None,
                        "runtime": runtime if ended else None,
                        "exc_type": rng.choice(["ValueError", "KeyError", "TimeoutError"])
                        if status == "error"
                        else None,
                        "retries": 0,
                        "seq": 13,
                        "celery_state": celery_states.get(status),
                        "parent_id": parent,
                        "root_id": root,
                    }
                )
                parent = job_id
                steps.append({"job_id": job_id, "status": status, "at": created, "retries": 0})
                if len(sample) < 1000 and rng.random() < 0.01:
                    sample.append(job_id)
            connection.execute(sa.insert(jobs), rows)
            connection.execute(sa.insert(transitions), steps)
            print(f"  seeded {start + len(rows):>9,}", end="\r", flush=True)
    if fold:
        started = time.perf_counter()
        moved = store.fold_stats()
        print(f"\n  folded {moved:,} changes in {time.perf_counter() - started:.1f} s", end="")
    settle(store)
    print()
    return sample


def settle(store: Store) -> None:
    """Bring the store to where a live one is some minutes after such a load: statistics
    gathered, and on PostgreSQL every table vacuumed (the running and pending jobs' indexes
    answer from the index alone only once their pages are all-visible, as autovacuum soon makes
    them) and the load's writes checkpointed, so that they are not still being flushed while
    the reads are timed."""
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
            c.exec_driver_sql("CHECKPOINT")
    elif store.engine.dialect.name in ("mysql", "mariadb"):
        with store.engine.begin() as c:
            c.exec_driver_sql("ANALYZE TABLE taskjobs_jobs, taskjobs_transitions, taskjobs_stats")
    else:
        with store.engine.begin() as c:
            c.exec_driver_sql("ANALYZE")


def timed(function: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Median and max milliseconds of ``repeat`` calls, after one warm-up call."""
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(samples), "max_ms": max(samples)}


def plans(store: Store) -> dict[str, str]:
    """The database's plan for each indexed query, to check that indexes are used."""
    c = jobs.c
    queries = {
        "job by id": sa.select(jobs).where(c.id == "x"),
        "newest in a state": sa.select(jobs)
        .where(c.status == "pending")
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(100),
        "filtered page": sa.select(jobs)
        .where(c.name == NAMES[0], c.user == USERS[0])
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(50),
        "report window": sa.select(c.name, c.status, sa.func.count())
        .where(c.created_at >= utcnow() - timedelta(days=1))
        .group_by(c.name, c.status),
        "history": sa.select(transitions)
        .where(transitions.c.job_id == "x")
        .order_by(transitions.c.at, transitions.c.id),
    }
    dialect = store.engine.dialect
    found = {}
    with store.engine.connect() as connection:
        for label, query in queries.items():
            sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
            rows = connection.exec_driver_sql(prefix + sql).fetchall()
            found[label] = " | ".join(str(row[-1]) for row in rows)
    return found


def run(kind: str, count: int, repeat: int, tmp: str) -> dict[str, Any]:
    rng = random.Random(1234)
    with scratch_database(kind, tmp) as url:
        store = taskjobs.configure(url)
        started = time.perf_counter()
        sample = seed(store, count, rng)
        seeded_in = time.perf_counter() - started
        ids = iter(sample * (repeat + 2))
        first_page = getJobs(name=NAMES[3], user=USERS[5], limit=50)
        results = {
            "getJob by id": timed(lambda: getJob(next(ids), "finished"), repeat),
            "getPendingJobs(limit=100)": timed(lambda: getPendingJobs(limit=100), repeat),
            "getJobs(name, user, limit=50)": timed(
                lambda: getJobs(name=NAMES[3], user=USERS[5], limit=50), repeat
            ),
            "next keyset page": timed(
                lambda: getJobs(name=NAMES[3], user=USERS[5], limit=50, after=first_page[-1]["id"]),
                repeat,
            ),
            "show (job + history)": timed(
                lambda: (getJob(next(ids), "finished"), getJobHistory(next(ids))), repeat
            ),
            "report, last 24 h": timed(build_report, max(3, repeat // 4)),
        }
        explained = plans(store)
        store.dispose()
        taskjobs.configure(None)
    return {"seed_seconds": seeded_in, "timings": results, "plans": explained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "jobs": args.jobs,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="taskjobs-bench-") as tmp:
        for kind in args.databases.split(","):
            print(f"{kind}: seeding {args.jobs:,} jobs")
            report["results"][kind] = run(kind, args.jobs, args.repeat, tmp)
    print(f"\n{'query':<32}" + "".join(f"{kind:>22}" for kind in report["results"]))
    labels = next(iter(report["results"].values()))["timings"]
    for label in labels:
        cells = "".join(
            f"{result['timings'][label]['median_ms']:>19.2f} ms"
            for result in report["results"].values()
        )
        print(f"{label:<32}{cells}")
    for kind, result in report["results"].items():
        print(f"\n{kind} plans:")
        for label, plan in result["plans"].items():
            print(f"  {label}: {plan[:150]}")
    save_results("queries", report)


if __name__ == "__main__":
    main()
