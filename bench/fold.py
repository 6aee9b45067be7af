"""Fold benchmark: what a fold of the running aggregates costs the process that runs it (a
worker's heartbeat thread, beside the worker's main loop), per logged change.

    python bench/fold.py [--jobs 30000] [--databases postgresql,sqlite,mariadb] [--reps 3]

For each database and each repetition: a scratch database seeded with ``--jobs`` jobs inserted
at once (``queries.seed``, without folding), then every finished job updated once more, as a
live store's jobs change after their insert; each insert and update logs a change. Then one
``Store.fold_stats()`` folds them all, timed in CPU seconds of this process and wall seconds.
Two shapes of store:
- ``live``: one task name and two workers, the jobs created within ``--live-seconds`` (35 s):
  a busy worker's log, whose changes share their minute, task and worker.
- ``spread``: 50 task names and 10 workers over ``--spread-minutes`` (29): changes that share
  little, the fold's worst case.
Results go to bench/results/fold-<time>.json. To compare two commits, run this script from a
worktree of each (``git worktree add``), one after the other.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import save_results  # noqa: E402
from bench.queries import seed  # noqa: E402
from taskjobs.store import Store  # noqa: E402
from taskjobs.store.tables import jobs, stat_log, stats  # noqa: E402
from tests.services import scratch_database  # noqa: E402

SHAPES = {
    "live": {"names": ["bench.noop"], "workers": ["celery@a", "celery@b"]},
    "spread": {},  # queries.seed's own names and workers
}


def measure(kind: str, shape: str, count: int, span: float, tmp: str) -> dict[str, Any]:
    """One seeded store folded once: CPU and wall microseconds per change."""
    with scratch_database(kind, tmp) as url:
        store = Store(url)
        seed(store, count, random.Random(7), fold=False, days=span / 86400, **SHAPES[shape])
        with store.engine.begin() as connection:
            finished = sa.update(jobs).where(jobs.c.status == "finished").values(retries=1)
            connection.execute(finished)
            logged = connection.scalar(sa.select(sa.func.count()).select_from(stat_log))
        cpu, wall = time.process_time(), time.perf_counter()
        moved = store.fold_stats()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        with store.engine.connect() as connection:
            rows = connection.scalar(sa.select(sa.func.count()).select_from(stats))
        store.dispose()
    if moved != logged:
        raise RuntimeError(f"{kind}: the fold moved {moved} of {logged} logged changes")
    return {
        "changes": moved,
        "aggregate_rows": rows,
        "cpu_us_per_change": cpu / moved * 1e6,
        "wall_us_per_change": wall / moved * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--databases", default="postgresql,sqlite,mariadb")
    parser.add_argument("--shapes", default="live,spread")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=35.0)
    parser.add_argument("--spread-minutes", type=float, default=29.0)
    args = parser.parse_args()
    spans = {"live": args.live_seconds, "spread": args.spread_minutes * 60}
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="taskjobs-bench-") as tmp:
        for rep in range(1, args.reps + 1):
            for kind in args.databases.split(","):
                for shape in args.shapes.split(","):
                    found = measure(kind, shape, args.jobs, spans[shape], tmp)
                    runs.setdefault(f"{kind} {shape}", []).append(found)
                    print(f"\n[rep {rep}] {kind:<10} {shape:<6} "
                          f"{found['cpu_us_per_change']:6.1f} us CPU, "
                          f"{found['wall_us_per_change']:6.1f} us wall a change "
                          f"({found['changes']:,} changes)")  # fmt: skip
    medians = {
        label: {
            figure: statistics.median(run[figure] for run in found)
            for figure in ("cpu_us_per_change", "wall_us_per_change")
        }
        for label, found in runs.items()
    }
    print(f"\n{'store':<22}{'CPU a change':>16}{'wall a change':>16}   (medians)")
    for label, median in medians.items():
        print(f"{label:<22}{median['cpu_us_per_change']:>13.1f} us"
              f"{median['wall_us_per_change']:>13.1f} us")  # fmt: skip
    save_results(
        "fold", {"jobs": args.jobs, "spans_seconds": spans, "runs": runs, "medians": medians}
    )


if __name__ == "__main__":
    main()
