"""Worker memory: resident size of a solo ``celery worker`` with and without taskjobs.

    python bench/memory.py [--tasks 10000]

For each variant (no tracking; taskjobs on a SQLite file; taskjobs on PostgreSQL) it starts a
solo worker (one process, so its resident size is the whole worker), publishes no-op tasks in
rounds, waits for each round to be done, and reads the worker's VmRSS from /proc after each
round. Growth that keeps going round after round would be a per-task leak; a step at the start
is imports, pools and caches. Results go to bench/results/memory-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import BROKER_URL, NewKeys, save_results, start_worker, wait_ready  # noqa: E402
from tests.services import scratch_database  # noqa: E402

ROUNDS = 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def measure(label: str, url: str | None, tasks: int, tmp: str) -> dict[str, Any]:
    queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
    conf = {"task_ignore_result": True}
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_BROKER": BROKER_URL,
        "BENCH_QUEUE": queue,
        "BENCH_CONF": json.dumps(conf),
        "BENCH_TASKJOBS_URL": url or "",
    }
    client = redis.Redis.from_url(BROKER_URL)
    new_keys = NewKeys(client)
    worker = start_worker(env, "solo", queue, f"{queue}@%h", Path(tmp), loglevel="WARNING")
    samples = []
    try:
        wait_ready(worker)  # the first reading is of a worker that has finished starting
        sys.path.insert(0, str(ROOT))
        os.environ.update({k: env[k] for k in ("BENCH_BROKER", "BENCH_QUEUE", "BENCH_CONF")})
        os.environ["BENCH_TASKJOBS_URL"] = ""  # the publisher need not track
        from bench import benchapp

        benchapp.app.conf.task_default_queue = queue
        samples.append({"tasks": 0, "rss_kib": rss_kib(worker.process.pid)})
        per_round = tasks // ROUNDS
        for done in range(per_round, tasks + 1, per_round):
            for _ in range(per_round):
                benchapp.noop.apply_async(queue=queue)
            while client.llen(queue):
                time.sleep(0.05)
            time.sleep(0.5)  # the last message taken is being run
            samples.append({"tasks": done, "rss_kib": rss_kib(worker.process.pid)})
            print(f"  {label:<20} {done:>6} tasks  {samples[-1]['rss_kib'] / 1024:7.1f} MiB")
    finally:
        worker.stop()
        new_keys.delete()
    first, last = samples[1]["rss_kib"], samples[-1]["rss_kib"]
    return {"samples": samples, "growth_after_first_round_kib": last - first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    results: dict[str, Any] = {"tasks": args.tasks, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="taskjobs-memory-") as tmp:
        results["variants"]["no tracking"] = measure("no tracking", None, args.tasks, tmp)
        with scratch_database("sqlite", tmp) as url:
            results["variants"]["taskjobs sqlite"] = measure(
                "taskjobs sqlite", url, args.tasks, tmp
            )
        with scratch_database("postgresql", tmp) as url:
            results["variants"]["taskjobs postgresql"] = measure(
                "taskjobs postgresql", url, args.tasks, tmp
            )
    print(f"\n{'variant':<22}{'start MiB':>10}{'after 1st round':>17}{'end MiB':>10}{'growth':>10}")
    for label, found in results["variants"].items():
        samples = found["samples"]
        print(
            f"{label:<22}{samples[0]['rss_kib'] / 1024:>10.1f}{samples[1]['rss_kib'] / 1024:>17.1f}"
            f"{samples[-1]['rss_kib'] / 1024:>10.1f}"
            f"{found['growth_after_first_round_kib'] / 1024:>9.1f}M"
        )
    save_results("memory", results)


if __name__ == "__main__":
    main()
