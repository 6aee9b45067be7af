"""Scrape benchmark: ``GET /metrics`` on a store holding 1,000,000 jobs.

    python bench/metrics_scrape.py [--jobs 1000000] [--databases sqlite,postgresql] [--scrapes 5]

Seeds a scratch database per kind with ``bench/queries.py``'s jobs (spread over 7 days, 50 task
names, 10 workers; 90% finished, 5% error, 3% pending, 2% running) and a heartbeat per worker,
then times ``--scrapes`` scrapes through the app (after one warm-up), and as many runs of each
of a scrape's statements on its own, every row fetched: the reads of the running aggregates,
the oldest pending wait, the workers. For comparison it also times the metrics' reads with the
histograms over every job (what a cumulative histogram would need), and shows the plans.
Results go to bench/results/metrics-scrape-<time>.json.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import taskjobs  # noqa: E402
from bench.harness import save_results  # noqa: E402
from bench.queries import WORKERS, seed  # noqa: E402
from taskjobs.model import utcnow  # noqa: E402
from taskjobs.store import Store  # noqa: E402
from taskjobs.web import create_app  # noqa: E402
from taskjobs.web.metrics import BUCKETS  # noqa: E402
from tests.services import scratch_database  # noqa: E402

# The statements of a scrape, told apart by what their SQL holds (checked in this order).
STATEMENTS = {
    "aggregates": "from taskjobs_stats",
    "logged changes": "from taskjobs_stat_log",
    "histograms": "julianday|extract|timestampdiff",
    "oldest pending": "min(",
    "errors": "coalesce(taskjobs_jobs.exc_type",
    "running by worker": "worker is not null",
    "workers": "from taskjobs_workers",
    "totals": "count(*)",
}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def label_of(sql: str) -> str:
    lowered = sql.lower()
    for label, marks in STATEMENTS.items():
        if any(mark in lowered for mark in marks.split("|")):
            return label
    return "other"


@contextmanager
def captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs on taskjobs' tables the store runs inside the block, with their parameters."""
    found: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM taskjobs_" in statement:
            found.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", keep)
    try:
        yield found
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", keep)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "max_ms": max(samples)}


def each_statement(
    store: Store, statements: list[tuple[str, Any]], repeat: int
) -> dict[str, dict[str, Any]]:
    """Each statement's time (executed and every row fetched, ``repeat`` times) and plan."""
    dialect = store.engine.dialect.name
    explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    found: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as connection:
        for statement, parameters in statements:
            samples = []
            for _ in range(repeat):
                began = time.perf_counter()
                connection.exec_driver_sql(statement, parameters).fetchall()
                samples.append((time.perf_counter() - began) * 1000)
            plan = connection.exec_driver_sql(explain + statement, parameters).fetchall()
            label = label_of(statement)
            if label in found:
                label = f"{label} {sum(key.startswith(label) for key in found) + 1}"
            found[label] = {
                **summary(samples),
                "plan": " | ".join(str(row[-1]) for row in plan),
            }
    return found


def run(kind: str, count: int, scrapes: int, tmp: str) -> dict[str, Any]:
    rng = random.Random(1234)
    with scratch_database(kind, tmp) as url:
        store = taskjobs.configure(url)
        started = time.perf_counter()
        seed(store, count, rng)
        for worker in WORKERS:
            store.heartbeat(worker, hostname=worker.partition("@")[2], pid=1, at=utcnow())
        seeded_in = time.perf_counter() - started
        result: dict[str, Any] = {"seed_seconds": seeded_in}
        with TestClient(create_app(store)) as client:
            with captured(store) as statements:
                assert client.get("/metrics").status_code == 200  # also a warm-up
            walls, reported = [], []
            for _ in range(scrapes):
                began = time.perf_counter()
                answer = client.get("/metrics")
                walls.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, answer.text
                line = next(
                    line
                    for line in answer.text.splitlines()
                    if line.startswith("taskjobs_scrape_duration_seconds ")
                )
                reported.append(float(line.split()[1]) * 1000)
        result["scrape"] = {
            "wall": summary(walls),
            "taskjobs_scrape_duration_seconds": summary(reported),
            "bytes": len(answer.content),
        }
        result["statements"] = each_statement(store, statements, scrapes)
        samples = []
        for _ in range(scrapes):
            began = time.perf_counter()
            store.metrics_rows(now=utcnow(), since=EPOCH, buckets=BUCKETS)
            samples.append((time.perf_counter() - began) * 1000)
        result["histograms over every job"] = summary(samples)
        store.dispose()
        taskjobs.configure(None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--scrapes", type=int, default=5)
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
            report["results"][kind] = run(kind, args.jobs, args.scrapes, tmp)
    for kind, result in report["results"].items():
        scrape = result["scrape"]
        print(f"\n{kind}, {args.jobs:,} jobs, {args.scrapes} runs (median / max ms):")
        print(f"  GET /metrics (wall)           {scrape['wall']['median_ms']:>9.1f} / "
              f"{scrape['wall']['max_ms']:.1f}")  # fmt: skip
        figures = {**result["statements"], "histograms, every job": result[
            "histograms over every job"]}  # fmt: skip
        for label, figure in figures.items():
            print(f"  {label:<30}{figure['median_ms']:>9.1f} / {figure['max_ms']:.1f}")
        for label, figure in result["statements"].items():
            print(f"  plan, {label}: {figure['plan'][:160]}")
    save_results("metrics-scrape", report)


if __name__ == "__main__":
    main()
