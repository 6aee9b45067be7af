"""``/metrics`` (Prometheus) and ``/healthz``: figures read from the job store at each scrape,
so that a restart of the web app, or another replica of it, changes nothing.

Each scrape builds a registry of its own holding one collector, which reads the store in four
statements (three in one transaction, then the workers); nothing is kept between scrapes and
nothing touches prometheus_client's process-wide default registry. A store that does not answer
makes ``/metrics`` and ``/healthz`` answer 503 with one line of text.

Names follow celery-exporter's (prefix ``celery_``) where the meaning is the same:

==================================== ================ ================= ===========================
taskjobs                             type             labels            celery-exporter
==================================== ================ ================= ===========================
taskjobs_jobs                        gauge            name, state       (none: it counts events)
taskjobs_oldest_pending_age_seconds  gauge            name              (none)
taskjobs_jobs_lost                   gauge            name              (none)
taskjobs_task_succeeded_total        counter          name              celery_task_succeeded_total
taskjobs_task_failed_total           counter          name, exception   celery_task_failed_total
taskjobs_task_retried_total          counter          name              celery_task_retried_total
taskjobs_task_runtime_seconds        gauge histogram  name              celery_task_runtime
taskjobs_task_queue_wait_seconds     gauge histogram  name              celery_task_queue_wait_time
taskjobs_worker_up                   gauge            hostname, worker  celery_worker_up
taskjobs_worker_tasks_active         gauge            hostname, worker  celery_worker_tasks_active
taskjobs_workers                     gauge            state             (none)
taskjobs_store_up                    gauge                              (none)
taskjobs_scrape_duration_seconds     gauge                              (none)
==================================== ================ ================= ===========================

What differs from celery-exporter, and why:

- ``name`` is the task name; ``state`` a taskjobs state (idle, pending, running, finished, error),
  every one present for every task name the store holds. ``hostname`` is the host part of the
  worker's node name, as in celery-exporter; ``worker`` the whole node name, which tells two
  workers of one host apart. Task metrics carry no ``hostname`` or ``queue_name``: those would
  multiply the series by the workers that ever ran, which the store keeps forever.
- The counters count the jobs the store holds that ended so: finished ones, errors (every cause:
  a failure, a revocation, a lost worker; ``exception`` is the exception class, or the Celery
  state when there is none, such as ``REVOKED``), and the retries recorded on jobs. Deleting
  jobs (``keep_finished`` / ``keep_error``) or a lost job's redelivery lowers them, which
  Prometheus takes for a counter reset.
- The histograms are gauge histograms over the jobs **created in the last hour**
  (``HISTOGRAM_WINDOW``) that started: the distribution now, not a count since start. Query the
  buckets as they are, not through ``rate()``:
  ``histogram_quantile(0.95, sum by (le) (taskjobs_task_runtime_seconds_bucket))``. An hour keeps
  quiet tasks in view and costs what an hour of jobs costs, through the (status, created_at)
  index; the end time has no index.
- The queue wait runs from publish, or from the ETA when the job has one, to the start of its
  attempt; the oldest pending age likewise, leaving out jobs whose ETA is still ahead.
- Only workers that have not stopped have ``worker_up`` and ``worker_tasks_active`` series (like
  celery-exporter's purge of offline workers); ``taskjobs_workers`` counts alive, silent (no
  heartbeat within the app's worker timeout) and stopped ones.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from taskjobs.errors import StoreError
from taskjobs.model import FINISHED, STATES, utcnow
from taskjobs.queries import ALIVE, STOPPED, WORKER_STATES, WorkerStatus, list_workers
from taskjobs.web.context import WebConfig, config_of

# The jobs the runtime and queue wait histograms describe: those created this long ago or since.
HISTOGRAM_WINDOW = timedelta(hours=1)
# Upper bounds, in seconds, of the histograms' buckets: Celery tasks take milliseconds to hours.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
           1800.0, 3600.0)  # fmt: skip
# The id ``/healthz`` reads: the read is what is checked, not what it finds.
HEALTH_PROBE_ID = "taskjobs-healthz"


def routes() -> list[BaseRoute]:
    return [
        Route("/metrics", scrape, methods=["GET"], name="metrics"),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
    ]


def scrape(request: Request) -> Response:
    """The metrics, in the text format the scraper asks for (Prometheus' or OpenMetrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(config_of(request)))
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    try:
        body = encode(registry)
    except StoreError as exc:
        return PlainTextResponse(f"{_one_line(exc)}\n", status_code=503)
    return Response(body, media_type=content_type)


def healthz(request: Request) -> Response:
    """``ok`` when the store answers a read; 503 otherwise, saying nothing of the store (this
    route needs no credentials)."""
    try:
        config_of(request).store.get(HEALTH_PROBE_ID)
    except StoreError:
        return PlainTextResponse("the job store does not answer\n", status_code=503)
    return PlainTextResponse("ok\n")


class StoreCollector(Collector):
    """The metrics of one app's store, read when collected."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = utcnow()
        store = self.config.store
        rows = store.metrics_rows(now=now, since=now - HISTOGRAM_WINDOW, buckets=BUCKETS)
        workers = list_workers(timeout=self.config.worker_timeout, at=now, store=store)
        yield from _job_families(rows, now)
        yield from _histograms(rows["histograms"])
        yield from _worker_families(workers)
        yield GaugeMetricFamily(
            "taskjobs_store_up", "Whether the job store answered this scrape's reads.", value=1
        )
        yield GaugeMetricFamily(
            "taskjobs_scrape_duration_seconds",
            "Seconds this scrape spent reading the job store.",
            value=time.perf_counter() - started,
        )


def _job_families(rows: dict[str, Any], now: datetime) -> Iterator[Metric]:
    jobs: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    retried: dict[str, int] = defaultdict(int)
    for name, status, count, retries in rows["totals"]:
        jobs[name or ""][status] = jobs[name or ""].get(status, 0) + int(count)
        retried[name or ""] += int(retries or 0)
    failed: dict[str, dict[str, int]] = defaultdict(dict)
    lost: dict[str, int] = defaultdict(int)
    for name, exception, count, lost_count in rows["errors"]:
        failed[name or ""][exception or ""] = int(count)
        lost[name or ""] += int(lost_count or 0)
    waiting = {name or "": since for name, since in rows["oldest_pending"]}
    names = sorted(set(jobs) | set(waiting))

    by_state = GaugeMetricFamily(
        "taskjobs_jobs", "Jobs in the store, by task name and state.", labels=["name", "state"]
    )
    for name in names:
        for state, count in jobs[name].items():
            by_state.add_metric([name, state], count)
    yield by_state

    age = GaugeMetricFamily(
        "taskjobs_oldest_pending_age_seconds",
        "Seconds the longest-waiting pending job of a task has waited (since its ETA if it has "
        "one; jobs whose ETA is ahead left out); 0 when none waits.",
        labels=["name"],
    )
    for name in names:
        since = waiting.get(name)
        age.add_metric([name], max((now - since).total_seconds(), 0.0) if since else 0.0)
    yield age

    lost_family = GaugeMetricFamily(
        "taskjobs_jobs_lost",
        "Jobs in the store that ended in error because their worker was lost (LOST).",
        labels=["name"],
    )
    succeeded = CounterMetricFamily(
        "taskjobs_task_succeeded",
        "Jobs in the store that finished.",
        labels=["name"],
    )
    failures = CounterMetricFamily(
        "taskjobs_task_failed",
        "Jobs in the store that ended in error, by exception class (or Celery state).",
        labels=["name", "exception"],
    )
    retries_family = CounterMetricFamily(
        "taskjobs_task_retried", "Retries recorded on the jobs in the store.", labels=["name"]
    )
    for name in names:
        lost_family.add_metric([name], lost[name])
        succeeded.add_metric([name], jobs[name][FINISHED])
        for exception, count in sorted((failed.get(name) or {"": 0}).items()):
            failures.add_metric([name, exception], count)
        retries_family.add_metric([name], retried[name])
    yield from (lost_family, succeeded, failures, retries_family)


def _histograms(rows: Sequence[tuple[Any, ...]]) -> Iterator[Metric]:
    window = f"created in the last {HISTOGRAM_WINDOW.total_seconds() / 3600:g} h"
    runtime = GaugeHistogramMetricFamily(
        "taskjobs_task_runtime_seconds",
        f"Runtime of the jobs {window} that ended.",
        labels=["name"],
    )
    wait = GaugeHistogramMetricFamily(
        "taskjobs_task_queue_wait_seconds",
        f"Seconds from publish (or ETA) to start of the jobs {window} that started.",
        labels=["name"],
    )
    width = len(BUCKETS) + 2  # the cumulative counts, then the count and the sum
    for name, *figures in sorted(rows, key=lambda row: row[0] or ""):
        for family, part in ((runtime, figures[:width]), (wait, figures[width:])):
            *cumulative, count, total = part
            buckets = [
                (str(bound), int(n or 0)) for bound, n in zip(BUCKETS, cumulative, strict=True)
            ]
            family.add_metric(
                [name or ""], [*buckets, ("+Inf", int(count or 0))], float(total or 0)
            )
    yield from (runtime, wait)


def _worker_families(workers: Sequence[WorkerStatus]) -> Iterator[Metric]:
    labels = ["hostname", "worker"]
    up = GaugeMetricFamily(
        "taskjobs_worker_up",
        "Whether a worker that has not stopped sent a heartbeat within the worker timeout.",
        labels=labels,
    )
    active = GaugeMetricFamily(
        "taskjobs_worker_tasks_active", "Jobs running now on a worker.", labels=labels
    )
    states = dict.fromkeys(WORKER_STATES, 0)
    for status in workers:
        states[status.state] += 1
        if status.state == STOPPED and not status.running:
            continue
        name = status.worker.name
        values = [name.rpartition("@")[2], name]
        up.add_metric(values, 1 if status.state == ALIVE else 0)
        active.add_metric(values, status.running)
    by_state = GaugeMetricFamily(
        "taskjobs_workers",
        "Workers that ever sent a heartbeat: alive, silent (presumed dead) or stopped.",
        labels=["state"],
    )
    for state, count in states.items():
        by_state.add_metric([state], count)
    yield from (up, active, by_state)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
