"""Web benchmark: every page and API route of ``taskjobs serve`` on a store of 1,000,000 jobs.

    python bench/web_pages.py [--jobs 1000000] [--databases sqlite,postgresql] [--repeat 10]

Seeds a scratch database per kind with ``bench/queries.py``'s jobs (7 days, 50 task names, 20
users, 10 workers; 90% finished, 5% error, 3% pending, 2% running) and a heartbeat per worker,
then times each route through the ASGI app in process (Starlette's test client: the server's
time, no network), median and max of ``--repeat`` requests after one warm-up. Results go to
bench/results/web-<time>.json.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import taskjobs  # noqa: E402
from bench.harness import save_results  # noqa: E402
from bench.queries import NAMES, USERS, WORKERS, seed  # noqa: E402
from taskjobs.model import utcnow  # noqa: E402
from taskjobs.web import create_app  # noqa: E402
from tests.services import scratch_database  # noqa: E402


def routes(sample: list[str], next_after: str) -> dict[str, str]:
    """The routes timed, by label: each page, and the JSON and metrics routes."""
    one = sample[0]
    return {
        "dashboard, 24 h": "/",
        "dashboard, 1 h": "/?window=1h",
        "jobs, newest 50": "/jobs",
        "jobs, state=error": "/jobs?state=error",
        "jobs, name + user": f"/jobs?name={NAMES[3]}&user={USERS[5]}",
        "jobs, next keyset page": f"/jobs?after={next_after}",
        "job page (history, workflow)": f"/jobs/{one}",
        "workers": "/workers",
        "api/tasks?limit=100 (Flower)": "/api/tasks?limit=100",
        "api/tasks, state + taskname (Flower)": (
            f"/api/tasks?limit=100&state=FAILURE&taskname={NAMES[3]}"
        ),
        "api/task/info/ID (Flower)": f"/api/task/info/{one}",
        "api/task/result/ID (Flower)": f"/api/task/result/{one}",
        "api/task/types (Flower)": "/api/task/types",
        "api/workers (Flower)": "/api/workers",
        "api/v1/jobs": "/api/v1/jobs",
        "api/v1/jobs/ID": f"/api/v1/jobs/{one}",
        "api/v1/jobs/ID/workflow": f"/api/v1/jobs/{one}/workflow",
        "api/v1/report, 24 h": "/api/v1/report",
        "api/v1/workers": "/api/v1/workers",
        "api/v1/openapi.json": "/api/v1/openapi.json",
        "metrics": "/metrics",
        "healthz": "/healthz",
    }


def timed(client: TestClient, path: str, repeat: int) -> dict[str, Any]:
    """Median and max milliseconds of ``repeat`` GETs of ``path``, after one warm-up."""
    status = client.get(path).status_code
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
    return {"status": status, "median_ms": statistics.median(samples), "max_ms": max(samples)}


def run(kind: str, count: int, repeat: int, tmp: str) -> dict[str, Any]:
    with scratch_database(kind, tmp) as url:
        store = taskjobs.configure(url)
        started = time.perf_counter()
        sample = seed(store, count, random.Random(1234))
        seeded_in = time.perf_counter() - started
        for index, worker in enumerate(WORKERS):
            store.heartbeat(worker, hostname=f"host-{index}", pid=100 + index, at=utcnow())
        client = TestClient(create_app(store, refresh=0))
        first = client.get("/jobs").text
        next_after = first.split("after=")[1].split('"')[0] if "after=" in first else sample[1]
        results = {
            label: timed(client, path, repeat) for label, path in routes(sample, next_after).items()
        }
        store.dispose()
        taskjobs.configure(None)
    return {"seed_seconds": seeded_in, "timings": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=10)
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
    kinds = list(report["results"])
    print(f"\n{'route (median ms, status)':<34}" + "".join(f"{kind:>18}" for kind in kinds))
    for label in next(iter(report["results"].values()))["timings"]:
        cells = []
        for kind in kinds:
            timing = report["results"][kind]["timings"][label]
            cells.append(f"{timing['median_ms']:>12.1f} ({timing['status']})")
        print(f"{label:<34}" + "".join(f"{cell:>18}" for cell in cells))
    save_results("web", report)


if __name__ == "__main__":
    main()
