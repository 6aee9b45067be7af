"""``/metrics`` and ``/healthz`` on every database: what a Prometheus scrape of the seeded store
reads, label by label, what follows the store (a lost job, a restart), and the answers when the
store does not answer."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from taskjobs import lifecycle
from taskjobs.api.job import setJob
from taskjobs.lifecycle import Lineage
from taskjobs.model import utcnow
from taskjobs.store import Store
from taskjobs.store.histogram import EDGES
from taskjobs.web import create_app
from taskjobs.web.metrics import BUCKETS
from tests.web.seed import HOSTILE, Seeded
from tests.writes import transition

EVIL = f"evil.{HOSTILE}"
NAMES = ["shop.checkout", "shop.charge", "shop.ship", "mail.send", "report.build", EVIL]
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(client: TestClient) -> Samples:
    """Every sample of one scrape: {sample name: {sorted label pairs: value}}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples: Samples, metric: str, *labels: str) -> dict[object, float]:
    """The values of ``metric`` keyed by its ``labels``' values (one label: the bare value)."""
    found: dict[object, float] = {}
    for pairs, value in samples[metric].items():
        named = dict(pairs)
        assert set(named) == set(labels), f"{metric} has labels {sorted(named)}"
        key = tuple(named[label] for label in labels)
        found[key[0] if len(key) == 1 else key] = value
    return found


def zero_but(values: dict[str, float], *names: str) -> dict[str, float]:
    """{name: 0} for every seeded task name, overridden by ``values``."""
    return {**dict.fromkeys(names or NAMES, 0.0), **values}


def test_jobs_are_counted_by_task_name_and_state(client: TestClient) -> None:
    samples = scrape(client)
    expected = {(name, state): 0.0 for name in NAMES for state in
                ("idle", "pending", "running", "finished", "error")}  # fmt: skip
    expected |= {
        ("shop.checkout", "finished"): 1,
        ("shop.charge", "finished"): 1,
        ("shop.ship", "finished"): 2,
        ("shop.ship", "error"): 1,
        ("mail.send", "pending"): 2,
        ("report.build", "running"): 1,
        (EVIL, "error"): 1,
    }
    assert by(samples, "taskjobs_jobs", "name", "state") == expected


def test_the_ended_jobs_are_counters_like_celery_exporters(
    fresh_client: TestClient, store: Store, fresh_seeded: Seeded
) -> None:
    samples = scrape(fresh_client)
    assert by(samples, "taskjobs_task_succeeded_total", "name") == zero_but(
        {"shop.checkout": 1, "shop.charge": 1, "shop.ship": 2}
    )
    failed = by(samples, "taskjobs_task_failed_total", "name", "exception")
    assert failed == {
        ("shop.ship", "LookupError"): 1,
        (EVIL, "LookupError"): 1,
        **{(name, ""): 0 for name in ("shop.checkout", "shop.charge", "mail.send", "report.build")},
    }
    retrying = store.get(fresh_seeded.retrying)
    assert retrying is not None and retrying.retries > 0
    assert by(samples, "taskjobs_task_retried_total", "name") == zero_but(
        {"mail.send": retrying.retries}
    )
    assert by(samples, "taskjobs_jobs_lost", "name") == zero_but({})


def test_the_oldest_pending_job_of_a_task_says_how_long_it_has_waited(
    client: TestClient, seeded: Seeded
) -> None:
    ages = by(scrape(client), "taskjobs_oldest_pending_age_seconds", "name")
    # mail.send's retrying job was published 10 minutes before the seeding, its other 3.
    waited = (utcnow() - seeded.now).total_seconds() + 600
    assert waited - 600 <= ages.pop("mail.send") <= waited
    assert ages == zero_but({}, *(name for name in NAMES if name != "mail.send"))


def test_a_job_whose_eta_is_ahead_is_not_waiting_yet(
    fresh_client: TestClient, store: Store
) -> None:
    now = utcnow()
    store.apply(lifecycle.published("job-later", name="report.later", user=None, request="",
                                    queue="celery", lineage=Lineage(), retries=0,
                                    eta=now + timedelta(hours=1), delivery=None,
                                    at=now - timedelta(hours=2)))  # fmt: skip
    samples = scrape(fresh_client)
    assert by(samples, "taskjobs_jobs", "name", "state")[("report.later", "pending")] == 1
    assert by(samples, "taskjobs_oldest_pending_age_seconds", "name")["report.later"] == 0


def test_a_job_due_since_its_eta_has_waited_since_then(
    fresh_client: TestClient, store: Store
) -> None:
    now = utcnow()
    eta = now - timedelta(hours=1)
    store.apply(lifecycle.published("job-due", name="report.due", user=None, request="",
                                    queue="celery", lineage=Lineage(), retries=0, eta=eta,
                                    delivery=None, at=now - timedelta(hours=2)))  # fmt: skip
    age = by(scrape(fresh_client), "taskjobs_oldest_pending_age_seconds", "name")["report.due"]
    assert 3600 <= age <= (utcnow() - eta).total_seconds()


def test_an_error_without_an_exception_counts_under_an_empty_exception(store: Store) -> None:
    """An error set through the API names no exception: its failure has the empty label, the
    same one a task without failures shows."""
    setJob("bare", {"name": "report.bare"}, "error")
    with TestClient(create_app(store)) as client:
        failed = by(scrape(client), "taskjobs_task_failed_total", "name", "exception")
    assert failed == {("report.bare", ""): 1}


def test_workers_are_alive_silent_or_stopped(client: TestClient) -> None:
    samples = scrape(client)
    assert by(samples, "taskjobs_workers", "state") == {"alive": 1, "silent": 1, "stopped": 1}
    # gamma stopped and runs nothing: it has no series of its own, as celery-exporter purges it.
    assert by(samples, "taskjobs_worker_up", "hostname", "worker") == {
        ("alpha", "celery@alpha"): 1,
        ("beta", "celery@beta"): 0,
    }
    assert by(samples, "taskjobs_worker_tasks_active", "hostname", "worker") == {
        ("alpha", "celery@alpha"): 1,
        ("beta", "celery@beta"): 0,
    }


def cumulative(values: list[float]) -> dict[str, float]:
    """The gauge histogram buckets of ``values``, keyed by ``le``."""
    buckets = {str(bound): float(sum(v <= bound for v in values)) for bound in BUCKETS}
    return {**buckets, "+Inf": float(len(values))}


def histogram(samples: Samples, metric: str, name: str) -> tuple[dict[str, float], float, float]:
    """(buckets by ``le``, count, sum) of one task's series of gauge histogram ``metric``."""
    buckets = {
        dict(pairs)["le"]: value
        for pairs, value in samples[f"{metric}_bucket"].items()
        if dict(pairs)["name"] == name
    }
    series = (("name", name),)
    return buckets, samples[f"{metric}_gcount"][series], samples[f"{metric}_gsum"][series]


def test_runtimes_fall_in_their_buckets(client: TestClient) -> None:
    samples = scrape(client)
    runtimes = {"shop.checkout": [0.25], "shop.charge": [0.25], "shop.ship": [1.5, 2.5, 3.5],
                EVIL: [0.25], "report.build": []}  # fmt: skip
    named = {dict(pairs)["name"] for pairs in samples["taskjobs_task_runtime_seconds_bucket"]}
    assert named == set(runtimes), "the tasks with a started job in the last hour"
    for name, values in runtimes.items():
        buckets, count, total = histogram(samples, "taskjobs_task_runtime_seconds", name)
        assert buckets == cumulative(values), name
        assert count == len(values) and total == pytest.approx(sum(values)), name


def test_queue_waits_run_from_publish_to_start(client: TestClient) -> None:
    samples = scrape(client)
    # Every seeded job that runs or ran started 2 s after its publish; the pending ones, the
    # retrying one included, are not counted.
    started = {"shop.checkout": 1, "shop.charge": 1, "shop.ship": 3, "report.build": 1, EVIL: 1}
    for name, jobs in started.items():
        buckets, count, total = histogram(samples, "taskjobs_task_queue_wait_seconds", name)
        assert buckets == cumulative([2.0] * jobs), name
        assert count == jobs and total == pytest.approx(2.0 * jobs, abs=1e-3), name
    assert ("name", "mail.send") not in {
        pair for pairs in samples["taskjobs_task_queue_wait_seconds_bucket"] for pair in pairs
    }


def test_a_lost_job_is_counted_and_a_restart_changes_nothing(
    fresh_client: TestClient, store: Store
) -> None:
    now = utcnow()
    common: dict[str, Any] = {"name": "shop.ship", "user": None, "request": "",
                              "queue": "celery", "lineage": Lineage(), "retries": 0}  # fmt: skip
    store.apply(lifecycle.published("job-lost", eta=None, delivery=None, at=now, **common))
    store.apply(lifecycle.started("job-lost", worker="celery@delta", pid=7, redelivered=False,
                                  delivery=None, at=now, **common))  # fmt: skip
    store.heartbeat("celery@delta", hostname="delta", pid=7, at=now)
    store.reap(silent_since=None, worker="celery@delta", at=now, reason="worker stopped")

    samples = scrape(fresh_client)
    assert by(samples, "taskjobs_jobs_lost", "name")["shop.ship"] == 1
    failed = by(samples, "taskjobs_task_failed_total", "name", "exception")
    assert failed[("shop.ship", "WorkerLost")] == 1
    assert by(samples, "taskjobs_workers", "state")["stopped"] == 2

    with TestClient(create_app(store)) as restarted:
        again = scrape(restarted)
    volatile = {"taskjobs_scrape_duration_seconds", "taskjobs_oldest_pending_age_seconds"}
    assert {k: v for k, v in again.items() if k not in volatile} == {
        k: v for k, v in samples.items() if k not in volatile
    }


def test_histogram_bounds_that_are_not_bin_bounds_are_refused_saying_what_to_pick(
    store: Store,
) -> None:
    now = utcnow()
    with pytest.raises(ValueError) as refused:
        store.metrics_rows(now=now, since=now - timedelta(hours=1), buckets=(0.7, 1.0, 4.0))
    assert str(refused.value) == (
        "histogram bucket bounds [0.7, 4.0] are not bounds of taskjobs' duration bins: pick "
        "round values (1, 2, 2.5, 3 or 5 times a power of ten, minutes, hours) or others from "
        "taskjobs.store.histogram.EDGES"
    )
    # What it suggests is accepted: round values, and any of the bins' bounds.
    round_values = (0.3, 2.5, 5.0, 60.0, 3600.0, EDGES[7])
    store.metrics_rows(now=now, since=now - timedelta(hours=1), buckets=round_values)


def test_each_histogram_bound_counts_the_same_in_whatever_order_the_bounds_come(
    store: Store,
) -> None:
    now = utcnow()
    for i, runtime in enumerate((0.05, 0.3, 2.0, 40.0)):
        transition(f"h{i}", "finished", {"name": "a", "runtime": runtime},
                   at=now - timedelta(minutes=5))  # fmt: skip

    def runtimes(buckets: tuple[float, ...]) -> list[Any]:
        (name, *figures), *others = store.metrics_rows(
            now=now, since=now - timedelta(hours=1), buckets=buckets
        )["histograms"]
        assert (name, others) == ("a", [])
        return figures[: len(buckets) + 2]  # per bound, then the count and the sum

    assert runtimes((0.1, 1.0, 10.0)) == [1, 2, 3, 4, pytest.approx(42.35)]
    assert runtimes((10.0, 0.1, 1.0)) == [3, 1, 2, 4, pytest.approx(42.35)]
    assert runtimes((60.0,)) == [4, 4, pytest.approx(42.35)]


def test_the_scrape_says_the_store_is_up_and_how_long_it_took(client: TestClient) -> None:
    samples = scrape(client)
    assert samples["taskjobs_store_up"] == {(): 1.0}
    assert 0 < samples["taskjobs_scrape_duration_seconds"][()] < 30


def test_the_metrics_of_an_empty_store_are_the_workers_and_the_store(store: Store) -> None:
    with TestClient(create_app(store)) as client:
        samples = scrape(client)
    assert by(samples, "taskjobs_workers", "state") == {"alive": 0, "silent": 0, "stopped": 0}
    assert samples["taskjobs_jobs"] == {} and samples["taskjobs_store_up"] == {(): 1.0}


def test_healthz_answers_ok_when_the_store_reads(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")


@pytest.mark.parametrize(
    "url",
    [UNREACHABLE, "sqlite:///{tmp}/missing/directory/jobs.sqlite3"],
    ids=["postgresql", "sqlite"],
)
def test_a_store_that_does_not_answer_is_a_503_of_one_line(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    with TestClient(create_app(url)) as client:
        metrics, health = client.get("/metrics"), client.get("/healthz")
    assert metrics.status_code == 503
    assert metrics.headers["content-type"].startswith("text/plain")
    assert metrics.text.endswith("\n") and "\n" not in metrics.text.rstrip("\n")
    assert "Traceback" not in metrics.text and "could not read jobs" in metrics.text
    assert (health.status_code, health.text) == (503, "the job store does not answer\n")


def test_both_routes_are_read_only(client: TestClient) -> None:
    for path in ("/metrics", "/healthz"):
        assert client.post(path).status_code == 405
        assert client.delete(path).status_code == 405
