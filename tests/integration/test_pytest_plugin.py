"""The pytest plugin as a user meets it: a small project whose tests use pytest-celery's
fixtures (``celery_app`` in eager mode, ``celery_session_app`` with
``celery_session_worker``) and the plugin's ``taskjobs_store``, ``wait_for_job`` and
``assert_job``, run by pytest itself (``pytester``) in a process of its own."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from taskjobs.testing.plugin import SCRATCH_PREFIX
from tests.services import MYSQL_URL, POSTGRES_URL, engine_url, require

pytest_plugins = ("pytester",)

TASKS = """
import taskjobs
from celery import shared_task


@shared_task(name="shop.add")
def add(x, y):
    return x + y


@shared_task(name="shop.pack", bind=True)
def pack(self, parcels):
    for number in range(1, parcels + 1):
        taskjobs.progress(f"packed parcel {number} of {parcels}")
    return {"parcels": parcels}


@shared_task(name="shop.ship")
def ship(parcel):
    raise LookupError(f"parcel {parcel} is lost")
"""

CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def celery_config():
    return {"broker_url": "memory://", "result_backend": "cache+memory://"}


@pytest.fixture(scope="session")
def celery_includes():
    return ["shop"]
"""

EAGER = """
import pytest
from taskjobs.testing import assert_job, wait_for_job

from shop import add, pack, ship


@pytest.fixture
def eager(celery_app, depends_on_current_app):
    # depends_on_current_app: the shared tasks run on this test's app.
    celery_app.conf.task_always_eager = True
    return celery_app


def test_an_eager_task_is_a_finished_job(eager, taskjobs_store):
    result = add.delay(2, 3)
    job = assert_job(result.id, status="finished", result=5, celery_state="SUCCESS")
    assert job.name == "shop.add"
    assert taskjobs_store.get(result.id) == job


def test_progress_and_failure_are_stored(eager, taskjobs_store):
    packed = pack.delay(3)
    assert_job(packed.id, result={"parcels": 3},
               messages=["packed parcel 1 of 3", "packed parcel 3 of 3"])
    lost = ship.apply_async((7,))
    assert wait_for_job(lost.id).status == "error"
    assert_job(lost.id, status="error", celery_state="FAILURE")


def test_each_test_has_an_empty_store(eager, taskjobs_store):
    assert taskjobs_store.select(limit=10) == []
"""

WORKER = """
from taskjobs.testing import assert_job, wait_for_job

from shop import add, pack


def test_a_worker_runs_a_tracked_task(celery_session_app, celery_session_worker, taskjobs_store):
    result = add.delay(20, 22)
    assert result.get(timeout=10) == 42
    wait_for_job(result.id)
    assert_job(result.id, status="finished", result=42,
               celery_states=["PENDING", "RECEIVED", "STARTED", "SUCCESS"])


def test_the_next_test_reads_its_own_store(celery_session_app, celery_session_worker,
                                           taskjobs_store):
    result = pack.delay(2)
    job = wait_for_job(result.id)
    assert job.messages.count("packed parcel") == 2
    assert [j.id for j in taskjobs_store.select(limit=10)] == [result.id]
"""

WRONG = """
from taskjobs.testing import assert_job, wait_for_job

from shop import add, pack


def test_expects_the_wrong_result(celery_app, depends_on_current_app, taskjobs_store):
    celery_app.conf.task_always_eager = True
    assert_job(add.delay(2, 2).id, status="finished", result=5)


def test_waits_for_a_job_that_never_runs(celery_app, depends_on_current_app, taskjobs_store):
    result = pack.apply_async((1,), countdown=3600)
    wait_for_job(result.id, timeout=0.5)
"""


def databases(server: str) -> list[str]:
    engine = sa.create_engine(engine_url(server))
    try:
        with engine.connect() as connection:
            return (
                list(sa.inspect(connection).get_schema_names())
                if "mysql" in server
                else [
                    row[0] for row in connection.exec_driver_sql("SELECT datname FROM pg_database")
                ]
            )
    finally:
        engine.dispose()


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(shop=TASKS, conftest=CONFTEST)
    return pytester


def test_eager_tests_use_a_fresh_tracked_store_each(project: pytest.Pytester) -> None:
    project.makepyfile(test_eager=EAGER)
    outcome = project.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=3)


def test_a_session_worker_writes_into_each_tests_store(project: pytest.Pytester) -> None:
    project.makepyfile(test_worker=WORKER)
    outcome = project.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


def test_a_failed_expectation_shows_the_job(project: pytest.Pytester) -> None:
    project.makepyfile(test_wrong=WRONG)
    outcome = project.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(failed=2)
    text = outcome.stdout.str()
    assert "result is 4, not 5" in text
    assert "celery_state  SUCCESS" in text, "the job is shown, every field"
    assert "did not become error or finished within 0.5s" in text
    assert "status        pending" in text and "name          shop.pack" in text


@pytest.mark.parametrize(("server", "kind"), [(POSTGRES_URL, "postgresql"), (MYSQL_URL, "mariadb")])
def test_the_store_can_live_on_a_database_server(
    project: pytest.Pytester, server: str, kind: str
) -> None:
    require(server, kind)
    project.makepyfile(test_eager=EAGER)
    outcome = project.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--taskjobs-database-url={server}"
    )
    outcome.assert_outcomes(passed=3)
    left = [name for name in databases(server) if name.startswith(SCRATCH_PREFIX)]
    assert left == [], "each test's database is dropped after it"


def test_the_plugin_turns_off(project: pytest.Pytester) -> None:
    project.makepyfile(test_eager=EAGER)
    outcome = project.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:taskjobs")
    outcome.assert_outcomes(errors=3)
    assert "fixture 'taskjobs_store' not found" in outcome.stdout.str()
