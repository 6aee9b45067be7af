"""Report scale benchmark: the status report and the metrics' reads over 1,000,000 and
10,000,000 jobs, read from the running aggregates.

    python bench/report_scale.py [--sizes 1000000,10000000] [--databases sqlite,postgresql]
                                 [--days 7] [--unended 50000] [--without-index NAME]
                                 [--url URL]

Seeds a scratch database per kind and size with ``queries.py``'s jobs (7 days, 50 task names,
10 workers; only the newest ``--unended`` jobs may be pending or running, as a live store's
unended jobs are bounded by its workers and queues), through the triggers that log each job's
figures, then times: the fold of those
changes into the aggregates (what a worker's heartbeat does as it goes), the report over the last
24 hours (``build_report``), ``/metrics``' reads (``metrics_rows``), and counts the aggregate rows
each read covers. The report's cost should follow the buckets and task names, not the jobs:
``--days 1`` puts every job in the report's window. ``--without-index NAME`` then drops that
index and times the same reads again on the same rows: one index's effect, in one run.
``--url`` seeds that database instead of a scratch one (one size, one kind) and keeps it, to
profile the reads on it afterwards; given again, it times the jobs already there.
Results go to bench/results/report-scale-<time>.json.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import taskjobs  # noqa: E402
from bench.harness import save_results  # noqa: E402
from bench.queries import UNENDED_STATUSES, seed, settle, timed  # noqa: E402
from taskjobs.model import utcnow  # noqa: E402
from taskjobs.report import build_report  # noqa: E402
from taskjobs.store import stats  # noqa: E402
from taskjobs.store.tables import jobs  # noqa: E402
from taskjobs.store.tables import stats as stats_table  # noqa: E402
from taskjobs.web.metrics import BUCKETS, HISTOGRAM_WINDOW  # noqa: E402
from tests.services import scratch_database  # noqa: E402

# As in a live store, whose pending and running jobs are bounded by its workers' slots and its
# queues, not by its history: only so many of the newest jobs may be unended.
UNENDED = 50_000


def covered_rows(store: taskjobs.store.Store) -> dict[str, int]:
    """How many aggregate rows the report's window and the whole table hold."""
    now = utcnow()
    c = stats_table.c
    ranges = stats.cover(now - timedelta(hours=24), now)
    window = sa.or_(
        *(sa.and_(c.width == w, c.bucket_start >= a, c.bucket_start < b) for w, a, b in ranges)
    )
    with store.engine.connect() as connection:
        total = connection.scalar(sa.select(sa.func.count()).select_from(stats_table))
        read = connection.scalar(sa.select(sa.func.count()).where(window))
    return {"aggregate_rows": int(total or 0), "report_window_rows": int(read or 0)}


def timings(store: taskjobs.store.Store, repeat: int) -> dict[str, Any]:
    """The report's and the metrics' reads, each timed ``repeat`` times."""
    now = utcnow()
    return {
        "report, last 24 h": timed(build_report, repeat),
        "metrics_rows": timed(
            lambda: store.metrics_rows(now=now, since=now - HISTOGRAM_WINDOW, buckets=BUCKETS),
            repeat,
        ),
    }


def run(url: str, count: int, options: argparse.Namespace) -> dict[str, Any]:
    """Seed ``count`` jobs into the database at ``url`` (unless it holds jobs already), fold
    them and time the reads."""
    store = taskjobs.configure(url)
    result: dict[str, Any] = {}
    store.upgrade()
    with store.engine.connect() as connection:
        held = connection.scalar(sa.select(sa.func.count()).select_from(jobs))
    if held:
        # Seeded by an earlier run, perhaps with another --unended: what the store holds.
        with store.engine.connect() as connection:
            unended = connection.scalar(
                sa.select(sa.func.count()).where(jobs.c.status.in_(UNENDED_STATUSES))
            )
        print(f"  {held:,} jobs there already ({unended:,} unended): not seeded")
        result["jobs_found"], result["unended_found"] = held, unended
    else:
        started = time.perf_counter()
        seed(store, count, random.Random(1234), fold=False, days=options.days,
             unended=options.unended)  # fmt: skip
        result["seed_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    folded = store.fold_stats()
    fold_seconds = time.perf_counter() - started
    print(f"  folded {folded:,} changes in {fold_seconds:.1f} s")
    settle(store)
    result.update(
        fold_seconds=fold_seconds,
        changes_folded=folded,
        changes_per_second=folded / fold_seconds if folded else None,
        **covered_rows(store),
        timings=timings(store, options.repeat),
    )
    without = options.without_index
    if without:  # the same reads on the same rows, the index dropped: its effect
        with store.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP INDEX {without}")
        result[f"timings without {without}"] = timings(store, options.repeat)
    store.dispose()
    taskjobs.configure(None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--unended", type=int, default=UNENDED, help="how many of the newest jobs may be unended"
    )
    parser.add_argument("--url", help="seed this database (one size, one kind) and keep it")
    parser.add_argument(
        "--without-index", metavar="NAME", help="then drop this index and time the reads again"
    )
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",")]
    kinds = args.databases.split(",")
    if args.url and (len(sizes) > 1 or len(kinds) > 1):
        parser.error(f"--url takes one size and one kind, not {args.sizes} and {args.databases}")
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "days": args.days,
        "unended": args.unended,
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="taskjobs-bench-") as tmp:
        for size in sizes:
            for kind in kinds:
                print(f"{kind}: seeding {size:,} jobs")
                if args.url:
                    result = run(args.url, size, args)
                else:
                    with scratch_database(kind, tmp) as url:
                        result = run(url, size, args)
                report["results"][f"{kind}-{size}"] = result
                timings = result["timings"]
                print(
                    f"  report {timings['report, last 24 h']['median_ms']:.1f} ms, "
                    f"metrics {timings['metrics_rows']['median_ms']:.1f} ms, "
                    f"{result['report_window_rows']:,} aggregate rows read of "
                    f"{result['aggregate_rows']:,}"
                )
                if args.without_index:
                    dropped = result[f"timings without {args.without_index}"]
                    print(
                        f"  without {args.without_index}: report "
                        f"{dropped['report, last 24 h']['median_ms']:.1f} ms, "
                        f"metrics {dropped['metrics_rows']['median_ms']:.1f} ms"
                    )
    save_results("report-scale", report)


if __name__ == "__main__":
    main()
