"""Two apps, two real workers, two databases: each app's jobs, from its publish to its end,
are in its own database, written in its own modes (one of them publishing asynchronously)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

import taskjobs
from taskjobs.celery.launcher import start_worker
from taskjobs.store import Store, store_for
from tests.acceptance.conftest import BROKERS, ROOT
from tests.services import require, scratch_database
from tests.twoapps import make_app
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

TASKS = 10


def all_finished(store: Store, ids: list[str]) -> bool:
    return all(getattr(store.get(job_id), "status", None) == "finished" for job_id in ids)


def test_two_apps_on_two_workers_keep_their_jobs_in_their_own_databases(tmp_path: Path) -> None:
    broker = BROKERS["redis"]
    require(broker, "redis")
    suffix = uuid.uuid4().hex[:8]
    with (
        scratch_database("postgresql", str(tmp_path)) as orders_url,
        scratch_database("sqlite", str(tmp_path)) as billing_url,
    ):
        taskjobs.configure(None)  # no store chosen by hand: each app's own setting counts
        modes = {"orders": "direct", "billing": "batched"}
        urls = {"orders": orders_url, "billing": billing_url}
        # The publisher (this process) writes the orders' pending jobs off its own path.
        publishing = {"orders": "async", "billing": "sync"}
        apps = {
            name: make_app(name, broker, urls[name], modes[name], suffix, publishing[name])
            for name in urls
        }
        env = {"PYTHONPATH": str(ROOT), "TJ_BROKER": broker, "TJ_QUEUE_SUFFIX": suffix}
        for name in urls:
            env[f"TJ_{name.upper()}_DB"], env[f"TJ_{name.upper()}_MODE"] = urls[name], modes[name]
        workers = [
            start_worker(
                f"tests.twoapps:{name}",
                log=tmp_path / f"{name}.log",
                hostname=f"{name}-{suffix}@%h",
                queues=[f"{name}-{suffix}"],
                concurrency=2,
                env=env,
                cwd=tmp_path,
            )
            for name in urls
        ]
        try:
            for worker in workers:
                worker.wait_ready()
            sent = {
                name: [app.send_task(f"{name}.work", (n,)).id for n in range(TASKS)]
                for name, app in apps.items()
            }
            for name in urls:
                store, ids = store_for(urls[name]), sent[name]
                wait_for(lambda s=store, i=ids: all_finished(s, i), timeout=60,
                         what=f"the {name} jobs to finish")  # fmt: skip
        finally:
            for worker in workers:
                worker.stop()
            for app in apps.values():
                taskjobs.install(app).drain()
                app.close()
            taskjobs.configure(None)

        for name, other in (("orders", "billing"), ("billing", "orders")):
            store, elsewhere = store_for(urls[name]), store_for(urls[other])
            assert sorted(job.id for job in store.select()) == sorted(sent[name])
            for job_id in sent[name]:
                job = store.get(job_id)
                assert job is not None and job.worker == f"{name}-{suffix}@{os.uname().nodename}"
                result = json.loads(job.result)
                assert (result["mode"], result["store"]) == (
                    modes[name], str(store.url)
                ), "the worker tracks the app in its own mode and store"  # fmt: skip
                states = [entry.celery_state for entry in store.history(job_id)]
                # The start can overtake the publish (queued off the caller's path) and the
                # receipt (the worker's main process writes it, the pool process the start):
                # the order guard then takes them as fills of what the row lacks, which log no
                # transition of their own.
                assert states[0] in ("PENDING", "RECEIVED", "STARTED"), states
                assert states[-1] == "SUCCESS", states
                assert store.get(job_id).created_at <= store.get(job_id).received_at  # type: ignore[union-attr]
                assert elsewhere.get(job_id) is None
