"""The store: single-statement writes, the lifecycle guard, errors, concurrency, migrations."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import taskjobs
from taskjobs import lifecycle
from taskjobs.api.job import getJob, setJob
from taskjobs.celery.recorder import Mode, Recorder
from taskjobs.errors import ConfigurationError, InvalidInputError, StoreError
from taskjobs.model import (
    STAGE_ENDED,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RUNNING,
    order_key,
    utcnow,
)
from taskjobs.store import JobQuery, Store, Transition, Worker, schema, stats, store_for
from taskjobs.store.schema import alembic_config, head_revision
from taskjobs.store.tables import JOBS_TABLE, VERSION_TABLE, metadata, stat_log
from tests.waiting import wait_for
from tests.writes import count_statements, transition


def test_a_transition_is_one_upsert_and_its_history_row_with_no_read(store: Store) -> None:
    transition("one", "pending", {"name": "n"})
    with count_statements(store) as seen:
        transition("one", "running", {"worker": "w1"}, seq=order_key(0, STAGE_RUNNING))
        transition("two", "pending", {"name": "new"}, seq=order_key(0, STAGE_PUBLISHED))
    if store.engine.dialect.name == "postgresql":
        # One round trip each: the upsert is a CTE feeding the history insert.
        assert len(seen) == 2
        for statement in seen:
            assert statement.split()[:6] == ["WITH", "up", "AS", "(INSERT", "INTO", "taskjobs_jobs"]
            assert "INSERT INTO taskjobs_transitions" in statement
        return
    assert len(seen) == 4
    for upsert, history in (seen[0:2], seen[2:4]):
        assert upsert.split()[:3] == ["INSERT", "INTO", "taskjobs_jobs"]
        assert history.split()[:3] == ["INSERT", "INTO", "taskjobs_transitions"]


def test_an_event_applied_without_read_back_returns_nothing_and_reads_nothing(
    store: Store,
) -> None:
    """Reading the job back costs a query; the receivers never ask for it."""
    event = lifecycle.Event("quiet", "pending", utcnow(), "test write", values={"name": "n"})
    with count_statements(store) as seen:
        assert store.apply(event) is None
    assert not [statement for statement in seen if statement.lstrip().upper().startswith("SELECT")]
    assert store.apply(event, read_back=True) is not None


def test_reads_wait_for_this_process_queued_writes_but_a_writer_thread_never_does(
    store: Store,
) -> None:
    """A writer thread that waited for its own queue would wait out the whole settle timeout."""
    waited: list[str] = []

    class Queued:
        def flush(self, timeout: float) -> int:
            waited.append(threading.current_thread().name)
            return 0

    queued = Queued()
    store.expect(queued)
    store.settle()
    writer = threading.Thread(target=store.settle, name="taskjobs-writer")
    writer.taskjobs_writer = True  # type: ignore[attr-defined]
    writer.start()
    writer.join()
    assert waited == [threading.current_thread().name]


def test_a_batch_is_one_transaction_that_fails_whole(store: Store) -> None:
    with store.batch():
        transition("b1", "pending", {})
        transition("b2", "pending", {})
    assert getJob("b1") is not None and getJob("b2") is not None
    with pytest.raises(RuntimeError), store.batch():
        transition("b3", "pending", {})
        raise RuntimeError("the batch fails after its first write")
    assert getJob("b3") is None


def test_history_records_applied_transitions_only(store: Store) -> None:
    from taskjobs.api.job import getJobHistory

    transition("h", "pending", {}, seq=order_key(0, STAGE_PUBLISHED))
    transition("h", "running", {"worker": "w1"}, seq=order_key(0, STAGE_RUNNING))
    transition("h", "finished", {}, seq=order_key(0, STAGE_ENDED))
    transition("h", "running", {"worker": "late"}, seq=order_key(0, STAGE_RUNNING))
    history = getJobHistory("h")
    assert [(h["status"], h["worker"]) for h in history] == [
        ("pending", None),
        ("running", "w1"),
        ("finished", "w1"),
    ]
    assert history[0]["at"] <= history[1]["at"] <= history[2]["at"]
    assert getJobHistory("unknown") == []


def test_an_event_without_its_attempt_ends_the_current_attempt_once(store: Store) -> None:
    transition("t", "running", {}, seq=order_key(2, STAGE_RUNNING))
    transition("t", "error", {"celery_state": "FAILURE"}, stage=STAGE_ENDED, message="first\n")
    transition("t", "error", {"celery_state": "OTHER"}, stage=STAGE_ENDED, message="second\n")
    job = getJob("t", "error")
    assert job is not None
    assert (job["celery_state"], job["messages"]) == ("FAILURE", "first\n")
    # The next attempt still moves on.
    transition("t", "running", {}, seq=order_key(3, STAGE_RUNNING))
    assert getJob("t", "running") is not None


def test_an_older_or_repeated_event_never_moves_a_job_back(store: Store) -> None:
    ended = order_key(0, STAGE_ENDED)
    transition("job", "finished", {"result": "42", "worker": "w1", "queue": "q"}, seq=ended)
    transition("job", "running", {"worker": "late"}, seq=order_key(0, STAGE_RUNNING))
    transition("job", "pending", {"queue": "late"}, seq=order_key(0, STAGE_PUBLISHED))
    transition("job", "error", {"result": "dup"}, seq=ended, message="dup\n")
    job = getJob("job", "finished")
    assert job is not None
    assert (job["result"], job["worker"], job["queue"], job["messages"]) == ("42", "w1", "q", "")


def test_an_older_event_still_fills_what_the_row_lacks(store: Store) -> None:
    # After an outage, buffered events land late: the receipt time is still worth keeping.
    transition("job", "finished", {"result": "42"}, seq=order_key(0, STAGE_ENDED))
    received = utcnow()
    transition(
        "job",
        "pending",
        {"received_at": received, "worker": "w1"},
        seq=order_key(0, STAGE_RECEIVED),
    )
    job = getJob("job", "finished")
    assert job is not None and job["received_at"] == received and job["worker"] == "w1"


def test_a_newer_event_applies_and_a_new_attempt_beats_an_ended_one(store: Store) -> None:
    transition("job", "running", {"worker": "w1"}, seq=order_key(0, STAGE_RUNNING))
    transition("job", "error", {}, seq=order_key(0, STAGE_ENDED), message="failed\n")
    transition(
        "job",
        "pending",
        {},
        seq=order_key(1, STAGE_PUBLISHED),
        message="retry\n",
        guard_message=False,
    )
    transition("job", "running", {"worker": "w2"}, seq=order_key(1, STAGE_RUNNING))
    job = getJob("job", "running")
    assert job is not None and job["worker"] == "w2"
    assert job["messages"] == "failed\nretry\n"


def test_fill_columns_complete_a_row_without_overwriting(store: Store) -> None:
    # The worker wrote first; the publisher's late write only fills what is missing.
    transition(
        "job",
        "finished",
        {"result": "1"},
        fill={"name": "from-worker"},
        seq=order_key(0, STAGE_ENDED),
    )
    transition(
        "job",
        "pending",
        {},
        fill={"name": "from-publisher", "user": "alice"},
        seq=order_key(0, STAGE_PUBLISHED),
    )
    job = getJob("job", "finished")
    assert job is not None
    assert (job["name"], job["user"], job["result"]) == ("from-worker", "alice", "1")


def test_unguarded_messages_append_even_when_the_state_is_older(store: Store) -> None:
    transition("job", "running", {}, seq=order_key(1, STAGE_RUNNING))
    transition(
        "job",
        "pending",
        {},
        seq=order_key(1, STAGE_PUBLISHED),
        message="reason\n",
        guard_message=False,
    )
    job = getJob("job", "running")
    assert job is not None and job["messages"] == "reason\n"


def test_an_unreachable_database_is_a_store_error_naming_it() -> None:
    store = store_for("postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError) as caught:
        store.get("x")
    assert caught.value.__cause__ is not None and caught.value.retryable
    message = str(caught.value)
    # The driver's own reason on one line, not SQLAlchemy's dump of the statement and links.
    assert message.startswith(
        "could not read jobs in postgresql+psycopg://nobody@127.0.0.1:1/nowhere: "
    )
    assert "Connection refused" in message and "\n" not in message and "  " not in message
    assert "sqlalche.me" not in message and "[SQL" not in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("oracle://scott@db/orcl", "unsupported database 'oracle'"),
        ("not a url", "invalid database URL"),
        ("postgresql+nodriver://x@y/z", "nodriver"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        taskjobs.configure(url)


def test_a_store_shows_its_url_without_the_password() -> None:
    assert repr(Store("postgresql://app:s3cret@db.example/jobs")) == (
        "Store('postgresql+psycopg://app:***@db.example/jobs')"
    )


def test_passwords_never_appear_in_errors() -> None:
    store = store_for("postgresql://user:s3cret@127.0.0.1:1/db")
    with pytest.raises(StoreError) as caught:
        store.get("x")
    assert "s3cret" not in str(caught.value)


def test_configure_switches_stores_and_none_goes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    taskjobs.configure(f"sqlite:///{first}")
    setJob("in-a", {})
    taskjobs.configure(f"sqlite:///{second}")
    assert getJob("in-a") is None
    monkeypatch.setenv("TASKJOBS_DATABASE_URL", f"sqlite:///{first}")
    taskjobs.configure(None)
    assert getJob("in-a") is not None
    taskjobs.configure(None)


def _write_many(url: str, worker: int, count: int) -> None:
    taskjobs.configure(url)
    for i in range(count):
        setJob(f"w{worker}-{i}", {"name": f"job {i}", "pid": worker}, "running")
        setJob("shared", {"messages": f"{worker}-{i}"}, "running")
        setJob(f"w{worker}-{i}", {"result": i}, "finished")


THREADS, PROCESSES, WRITES = 8, 4, 40


def _check_all_written(writers: list[int]) -> None:
    for worker in writers:
        for i in range(WRITES):
            job = getJob(f"w{worker}-{i}", "finished")
            assert job is not None and job["result"] == str(i) and job["pid"] == worker
    assert getJob("shared", "running") is not None


@pytest.mark.slow
def test_threads_and_processes_write_one_store_at_once(store: Store) -> None:
    url = store.url.render_as_string(hide_password=False)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            _write_many(url, worker, WRITES)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_many, args=(url, 100 + i, WRITES)) for i in range(PROCESSES)
    ]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join(timeout=240)
    assert errors == []
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    _check_all_written([*range(THREADS), *(100 + i for i in range(PROCESSES))])


@pytest.mark.slow
def test_forked_children_reuse_a_store_the_parent_used(store: Store) -> None:
    """Celery's prefork pool forks after the parent has used the store: children must not
    share the parent's connections (they would interleave on one socket or file lock)."""
    url = store.url.render_as_string(hide_password=False)
    setJob("parent", {})
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_write_many, args=(url, 200 + i, WRITES)) for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    setJob("parent", {}, "finished")  # the parent's own pool still works
    _check_all_written([200 + i for i in range(PROCESSES)])


def _write_in_child(url: str, job_id: str) -> None:
    from taskjobs.store import engine

    engine.SQLITE_BUSY_TIMEOUT = 2  # a child that cannot write fails in 2 s, not 30
    store_for(url).apply(lifecycle.explicit(job_id, "finished", {}, utcnow()))


FORKS = 10


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_child_forked_while_another_thread_writes_to_sqlite_can_write(store: Store) -> None:
    """SQLite's locks live in process memory that ``fork()`` copies: a child forked while
    another thread of its parent was inside a transaction could never write ("database is
    locked"). Celery's prefork pool forks a new child at any time, while the main process's
    writer thread and heartbeat write. A fork now waits for that transaction to end."""
    url = store.url.render_as_string(hide_password=False)
    stop = threading.Event()
    written = 0

    def write_in_a_loop() -> None:
        nonlocal written
        while not stop.is_set():
            store.apply(lifecycle.explicit(f"parent-{written % 20}", "running", {}, utcnow()))
            written += 1

    writer = threading.Thread(target=write_in_a_loop)
    writer.start()
    try:
        context = multiprocessing.get_context("fork")
        exitcodes = []
        for n in range(FORKS):
            child = context.Process(target=_write_in_child, args=(url, f"child-{n}"))
            child.start()
            child.join(timeout=20)
            exitcodes.append(child.exitcode)  # None: still waiting for a lock, after 20 s
            if child.is_alive():
                child.kill()
                break
    finally:
        stop.set()
        writer.join(timeout=30)
    assert exitcodes == [0] * FORKS
    assert all(store.get(f"child-{n}") is not None for n in range(FORKS))
    assert written > FORKS, "the parent's writer went on writing between the forks"


def test_an_empty_database_gets_the_schema_on_first_use(fresh_url: str) -> None:
    store = Store(fresh_url)
    assert store.revision() is None
    assert store.get("anything") is None
    assert store.revision() == head_revision()
    store.dispose()


def test_the_migrated_schema_matches_the_tables_and_reapplying_is_a_no_op(fresh_url: str) -> None:
    store = Store(fresh_url)
    assert store.upgrade() == (None, head_revision())
    assert store.upgrade() == (head_revision(), head_revision())
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        differences = [
            diff
            for diff in compare_metadata(context, metadata)
            if not (diff[0] == "remove_table" and diff[1].name == VERSION_TABLE)
        ]
    assert differences == []
    store.dispose()


def _stats_layout(connection: sa.Connection) -> str:
    """How the aggregates' table is stored: what its primary key carries besides its columns
    (PostgreSQL) or whether its rows are kept in the key's order (SQLite)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        extra = connection.scalar(sa.text(
            "SELECT indnatts - indnkeyatts FROM pg_index "
            "WHERE indrelid = 'taskjobs_stats'::regclass AND indisprimary"
        ))  # fmt: skip
        return f"{extra} included"
    if dialect == "sqlite":
        sql = connection.scalar(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'taskjobs_stats'")
        )
        return "no rowid" if "WITHOUT ROWID" in sql.upper() else "rowid"
    return "clustered"  # InnoDB keeps every table in its primary key's order


def test_the_aggregates_are_read_from_their_key_and_migrating_either_way_keeps_them(
    fresh_url: str,
) -> None:
    store = Store(fresh_url)
    store.upgrade()
    hour = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    row = {"kind": stats.RUNTIME, "width": 3600, "bucket_start": hour, "name": "tasks.a",
           "label": "0.25", "jobs": 3, "total": 0.6}  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(stats.stats.insert(), row)
    covering = {"postgresql": "2 included", "sqlite": "no rowid"}
    plain = {"postgresql": "0 included", "sqlite": "rowid"}
    for revision, layouts in (("0007", plain), ("head", covering)):
        with store.engine.begin() as connection:
            config = alembic_config(connection)
            if revision == "head":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
        with store.engine.connect() as connection:
            assert _stats_layout(connection) == layouts.get(connection.dialect.name, "clustered")
            query = sa.select(stats.stats).order_by(stats.stats.c.width)
            found = [dict(r) for r in connection.execute(query).mappings()]
        # From 0011 on, the hour counts in its four hours' bucket too (12:00 to 16:00).
        assert found == [row, *([{**row, "width": 14400}] if revision == "head" else [])]
    store.dispose()


def test_many_processes_may_migrate_an_empty_database_at_once(fresh_url: str) -> None:
    code = "import sys, taskjobs.store as s; st = s.Store(sys.argv[1]); st.get('x'); print('ok')"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, fresh_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, outputs
    store = Store(fresh_url)
    assert store.revision() == head_revision()
    store.dispose()


def test_a_migration_that_outlasts_the_wait_is_still_waited_for(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long migration (MySQL copies a table to change a column) holds the migration lock
    for minutes: a process starting meanwhile waits for it, saying so, and never migrates the
    same revisions beside it."""
    if not fresh_url.startswith("mysql"):
        pytest.skip("MySQL's lock waits have a timeout; PostgreSQL's and SQLite's wait as long")
    monkeypatch.setattr(schema, "LOCK_TIMEOUT", 1)
    # What the waiting process logs (another test's logging setup may have turned the
    # "taskjobs" logger off in this process).
    warnings: list[str] = []
    monkeypatch.setattr(schema, "logger", Recorded(warnings))
    store = Store(fresh_url)
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0012")
    done: list[object] = []

    def upgrade() -> None:
        other = Store(fresh_url)
        done.append(other.upgrade())
        other.dispose()

    waiting = threading.Thread(target=upgrade)
    try:
        with store.engine.connect() as migrating:
            migrating.execute(sa.select(sa.func.get_lock(schema.LOCK_NAME, 0)))
            waiting.start()
            wait_for(lambda: warnings, what="a warning that it waits")
            assert "another process has been migrating" in warnings[0]
            assert store.revision() == "0012" and not done
    finally:
        store.dispose()  # closes the connection: the server releases its lock
    waiting.join(timeout=60)
    assert done == [("0012", head_revision())]


@dataclasses.dataclass
class Recorded:
    """A logger that keeps the text of the warnings it gets."""

    warnings: list[str]

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


def test_cli_db_upgrade_and_current(fresh_url: str) -> None:
    command = [sys.executable, "-m", "taskjobs.cli"]
    before = subprocess.run(
        [*command, "db", "current", "--db", fresh_url], capture_output=True, text=True, timeout=60
    )
    assert before.returncode == 0 and "none" in before.stdout
    first = subprocess.run(
        [*command, "db", "upgrade", "--db", fresh_url], capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert f"upgraded from revision none to {head_revision()}" in first.stdout
    again = subprocess.run(
        [*command, "db", "upgrade", "--db", fresh_url], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "already at revision" in again.stdout


def test_a_database_a_newer_release_migrated_is_used_as_it_is(
    fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling upgrade migrates first, while workers of the release before still run and
    # start new processes: theirs must keep tracking on the schema they do not know.
    first = Store(fresh_url)
    first.upgrade()
    with first.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    first.dispose()
    taskjobs.configure(fresh_url)
    try:
        with caplog.at_level("WARNING", logger="taskjobs"):
            setJob("on-newer", {"name": "tasks.kept"}, "finished")
        job = getJob("on-newer", "finished")
        assert job is not None and job["name"] == "tasks.kept"
        assert "at schema revision 9999, which a newer taskjobs made" in caplog.text
        assert taskjobs.configure(fresh_url).revision() == "9999"
    finally:
        taskjobs.configure(None)
    result = subprocess.run(
        [sys.executable, "-m", "taskjobs.cli", "db", "upgrade", "--db", fresh_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"revision 9999, newer than this taskjobs' {head_revision()}: left as it is" in (
        result.stdout
    )
    reread = Store(fresh_url)
    assert reread.revision() == "9999"
    reread.dispose()


def test_cli_reports_a_bad_url_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskjobs.cli", "db", "upgrade", "--db", "oracle://x@y/z"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: unsupported database 'oracle'")
    assert "Traceback" not in result.stderr


def test_upgrading_a_database_at_an_older_revision_keeps_its_jobs(fresh_url: str) -> None:
    from alembic import command

    from taskjobs.store.schema import alembic_config

    store = Store(fresh_url)
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.exec_driver_sql(
            "INSERT INTO taskjobs_jobs (id, name, status, created_at, updated_at) "
            "VALUES ('old', 'kept', 'finished', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    assert store.revision() == "0001"
    assert store.upgrade() == ("0001", head_revision())
    job = store.get("old")
    assert job is not None and (job.name, job.status, job.exc_type) == ("kept", "finished", None)
    store.dispose()


def test_ids_starting_with_takes_the_prefix_literally_in_id_order(store: Store) -> None:
    for job_id in ("a_2", "a_1", "ab-3", "a%4", "b_5"):
        transition(job_id, "pending", {})
    assert store.ids_starting_with("a_", 10) == ["a_1", "a_2"]  # "_" is no wildcard
    assert store.ids_starting_with("a%", 10) == ["a%4"]
    assert store.ids_starting_with("a", 2) == ["a%4", "a_1"]  # the first two, in id order
    assert store.ids_starting_with("z", 2) == []


def test_purge_deletes_what_was_created_strictly_before_and_its_history(store: Store) -> None:
    cutoff = datetime(2026, 1, 1, tzinfo=timezone.utc)
    transition("older", "finished", {}, at=cutoff - timedelta(microseconds=1000))
    transition("at-cutoff", "finished", {}, at=cutoff)
    transition("older-pending", "pending", {}, at=cutoff - timedelta(days=1))
    assert store.purge(statuses=["finished"], before=cutoff, batch_size=10) == 1
    assert getJob("older", "finished") is None and store.history("older") == []
    assert getJob("at-cutoff", "finished") is not None
    assert getJob("older-pending", "pending") is not None


def test_a_message_appended_touches_the_job(store: Store) -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    transition("job", "running", {}, at=created)
    later = created + timedelta(minutes=5)
    assert store.append_message("job", "half way\n", later)
    assert store.append_message("job", "nearly\n", later)
    job = store.get("job")
    assert job is not None and job.messages == "half way\nnearly\n" and job.updated_at == later
    assert not store.append_message("nobody", "x\n", later)


def _purge_old(store: Store) -> object:
    return store.purge(statuses=["finished"], before=utcnow(), batch_size=10)


def _reap_silent(store: Store) -> object:
    now = utcnow()
    return store.reap(silent_since=now - timedelta(minutes=1), worker=None, at=now, reason="x")


@pytest.mark.parametrize(("operation", "expected"), [
    (_purge_old, 1),
    (_reap_silent, {"celery@silent": 1}),
])  # fmt: skip
def test_read_then_write_operations_on_sqlite_wait_for_a_writer_instead_of_failing(
    tmp_path: Path, operation: Callable[[Store], object], expected: object
) -> None:
    """A write transaction on SQLite takes the write lock when it begins: one that read first
    and then wanted to write while another connection writes would fail at once ("database
    is locked") instead of waiting its turn."""
    path = tmp_path / "jobs.sqlite3"
    store = Store(f"sqlite:///{path}")
    long_ago = utcnow() - timedelta(days=2)
    transition("old", "finished", {}, at=long_ago, store=store)
    store.heartbeat("celery@silent", hostname="h", pid=1, at=long_ago)
    transition("lost", "running", {"worker": "celery@silent"}, at=long_ago, store=store)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(f"UPDATE {JOBS_TABLE} SET name = 'held' WHERE id = 'old'")
    outcome: list[object] = []
    running = threading.Thread(target=lambda: outcome.append(_or_error(lambda: operation(store))))
    running.start()
    running.join(timeout=1.0)  # one that does not wait has failed by now
    writer.execute("COMMIT")
    writer.close()
    running.join(timeout=30)
    assert outcome == [expected]
    store.dispose()


def _or_error(call: Callable[[], object]) -> object:
    try:
        return call()
    except StoreError as exc:
        return exc


def test_jobs_written_at_the_same_moment_keep_their_own_history(store: Store) -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fresh = Store(store.url)  # built here, not inherited: its statements are built anew
    with fresh.batch():
        for job_id in ("a", "b", "c"):
            transition(job_id, "pending", {"worker": f"w-{job_id}"}, at=moment, store=fresh)
    transition("a", "running", {}, at=moment, store=fresh)
    # An event older than the row changes nothing, so it leaves no history either. (It comes
    # later: an event that ties the row's last change to the microsecond is logged again.)
    later = moment + timedelta(seconds=1)
    transition("b", "running", {}, seq=order_key(0, STAGE_RUNNING), at=moment, store=fresh)
    transition("b", "pending", {}, seq=order_key(0, STAGE_PUBLISHED), at=later, store=fresh)
    fresh.dispose()
    assert [(h.status, h.worker) for h in store.history("a")] == [
        ("pending", "w-a"),
        ("running", "w-a"),
    ]
    assert [(h.status, h.worker) for h in store.history("b")] == [
        ("pending", "w-b"),
        ("running", "w-b"),
    ]


def test_deleting_a_job_deletes_its_history_and_only_its(store: Store) -> None:
    transition("gone", "pending", {})
    transition("kept", "pending", {})
    assert store.delete("gone") is True and store.delete("gone") is False
    assert store.history("gone") == [] and len(store.history("kept")) == 1


def test_reading_the_revision_of_an_unreachable_database_says_so() -> None:
    unreachable = store_for("postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError, match="could not read the schema revision in"):
        unreachable.revision()
    with pytest.raises(StoreError, match="could not upgrade the schema in"):
        unreachable.upgrade()


def test_urls_that_differ_only_in_their_password_get_stores_of_their_own() -> None:
    first = store_for("postgresql://app:one@127.0.0.1:1/jobs")
    assert store_for("postgresql://app:one@127.0.0.1:1/jobs") is first
    assert store_for("postgresql://app:two@127.0.0.1:1/jobs") is not first


def test_database_errors_read_as_one_line_and_say_whether_to_retry() -> None:
    from taskjobs.store.failures import reason, unreachable

    pool = sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")
    assert reason(pool) == "QueuePool limit of size 5 overflow 10 reached" and unreachable(pool)
    wordy = sa.exc.OperationalError("SELECT 1", {}, Exception("x\n  y " + "z" * 600))
    assert reason(wordy).startswith("x y zzz") and len(reason(wordy)) == 500
    gone = sa.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert reason(gone) == "gone" and unreachable(gone)
    bad = sa.exc.DBAPIError("SELECT 1", {}, Exception("value too long"))
    assert not unreachable(bad) and not unreachable(sa.exc.IntegrityError("", {}, Exception()))
    assert not unreachable(sa.exc.ArgumentError("not a database error at all"))


def test_workers_are_listed_most_recently_seen_first(store: Store) -> None:
    now = utcnow()
    for name, ago in (("celery@b", 30), ("celery@a", 10), ("celery@c", 20)):
        store.heartbeat(name, hostname="h", pid=1, at=now - timedelta(seconds=ago))
    assert [w.name for w in store.list_workers()] == ["celery@a", "celery@c", "celery@b"]


def test_a_lifecycle_event_applies_to_a_job_the_api_wrote_without_order(store: Store) -> None:
    """Jobs made by the documented functions carry no order key: the first lifecycle event,
    with or without a delivery stamp, applies to them."""
    for job_id, delivery in (("plain", None), ("stamped", 1_700_000_000_000_000)):
        transition(job_id, "pending", {"name": "made by hand"})
        transition(job_id, "running", {"worker": "w"}, seq=order_key(0, STAGE_RUNNING),
                   delivery=delivery)  # fmt: skip
        job = store.get(job_id)
        assert job is not None and (job.status, job.worker) == ("running", "w"), job_id


def test_a_stamped_delivery_starts_over_a_job_whose_delivery_was_not_stamped(
    store: Store,
) -> None:
    """A job recorded from a message without a delivery stamp (a publisher without
    taskjobs) ended; the same id comes back stamped: the new delivery starts the job over."""
    transition("reused", "finished", {}, seq=order_key(0, STAGE_ENDED))
    transition("reused", "pending", {}, seq=order_key(0, STAGE_PUBLISHED), delivery=1)
    job = store.get("reused")
    assert job is not None and job.status == "pending"


def test_a_repeated_event_of_a_delivery_is_applied_once(store: Store) -> None:
    stamp = 1_700_000_000_000_000
    for _ in range(2):  # Celery may send the same failure twice
        transition("twice", "error", {}, seq=order_key(0, STAGE_ENDED), delivery=stamp,
                   message="boom\n", at=utcnow())  # fmt: skip
    job = store.get("twice")
    assert job is not None and job.messages == "boom\n"
    assert [h.status for h in store.history("twice")] == ["error"]


def test_a_stage_event_applies_to_a_job_the_api_wrote_without_order(store: Store) -> None:
    transition("by-hand", "pending", {})
    transition("by-hand", "running", {"worker": "w"}, stage=STAGE_RUNNING)
    transition("by-hand", "pending", {}, stage=STAGE_RECEIVED)  # late: it had started already
    job = store.get("by-hand")
    assert job is not None and (job.status, job.worker) == ("running", "w")


def test_history_and_workers_are_frozen_records(store: Store) -> None:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    transition("job", "running", {"worker": "celery@w", "retries": 2, "celery_state": "STARTED"},
               seq=order_key(2, STAGE_RUNNING), at=at)  # fmt: skip
    assert store.history("job") == [Transition("running", "STARTED", "celery@w", 2, at)]
    store.heartbeat("celery@w", hostname="host-1", pid=42, at=at)
    store.heartbeat("celery@w", hostname="host-2", pid=43, at=at + timedelta(seconds=5))
    (worker,) = store.list_workers()
    assert worker == Worker("celery@w", "host-2", 43, at, at + timedelta(seconds=5), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        worker.pid = 1  # type: ignore[misc]


def test_running_jobs_are_counted_per_worker(store: Store) -> None:
    for job_id, state, worker in (("r1", "running", "celery@a"), ("r2", "running", "celery@a"),
                                  ("r3", "running", "celery@b"), ("done", "finished", "celery@b"),
                                  ("nowhere", "running", None)):  # fmt: skip
        transition(job_id, state, {"worker": worker})
    assert store.running_by_worker() == {"celery@a": 2, "celery@b": 1}


def test_a_keyset_page_follows_its_cursor_on_every_database(store: Store) -> None:
    """The cursor is (created_at, id) in newest-first order: a row-value comparison, expanded
    on MySQL; jobs of the cursor's own moment with a smaller id come after it."""
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for job_id, ago in (("b", 0), ("c", 0), ("a", 0), ("z", 1), ("y", -1)):
        transition(job_id, "pending", {}, at=moment - timedelta(seconds=ago))
    assert [job.id for job in store.select()] == ["y", "c", "b", "a", "z"]
    assert [job.id for job in store.select(after="c")] == ["b", "a", "z"]
    assert [job.id for job in store.select(after="a", limit=1)] == ["z"]
    assert store.select(after="z") == []


def _published(store: Store, job_id: str, name: str, at: datetime, parent: str | None) -> None:
    store.apply(lifecycle.published(job_id, name=name, user=None, request="", queue=None,
                                    lineage=lifecycle.Lineage(parent_id=parent), retries=0,
                                    eta=None, delivery=None, at=at))  # fmt: skip


def test_the_reads_for_the_json_apis(store: Store) -> None:
    """Distinct task names in order, at most as many as asked; the children of several jobs,
    oldest first whatever their ids; ties of an ascending order broken by id, ascending."""
    at = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
    _published(store, "p1", "shop.b", at, None)
    _published(store, "p2", "shop.a", at, None)
    _published(store, "c-z", "shop.c", at + timedelta(seconds=1), "p1")
    _published(store, "c-a", "shop.b", at + timedelta(seconds=2), "p1")
    _published(store, "c-m", "shop.a", at + timedelta(seconds=1), "p2")
    assert store.task_names(10) == ["shop.a", "shop.b", "shop.c"]
    assert store.task_names(2) == ["shop.a", "shop.b"]
    assert store.child_ids(["p1", "p2", "c-a"]) == {"p1": ["c-z", "c-a"], "p2": ["c-m"]}
    assert store.child_ids([]) == {}
    oldest = store.find(JobQuery(sort="created_at", ascending=True, limit=3))
    assert [job.id for job in oldest] == ["p1", "p2", "c-m"], "ties by id, ascending"
    by_state = store.find(JobQuery(celery_states=("PENDING",), name="shop.a", limit=10))
    assert [job.id for job in by_state] == ["c-m", "p2"]
    assert store.find(JobQuery(celery_states=("RETRY", "LOST"), limit=10)) == []


def test_the_filters_take_wildcards_literally_and_refuse_bad_orders_by_name(store: Store) -> None:
    at = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
    for job_id in ("a_1", "ab2", "50%-off", "500-off"):
        _published(store, job_id, f"shop.{job_id}", at, None)
    assert [job.id for job in store.find(JobQuery(id_prefix="a_", limit=10))] == ["a_1"]
    assert [job.id for job in store.find(JobQuery(search="50%", limit=10))] == ["50%-off"]
    sortable = r"^invalid sort 'colour': give one of created_at, received_at, started_at, "
    with pytest.raises(InvalidInputError, match=sortable):
        store.find(JobQuery(sort="colour"))
    with pytest.raises(
        InvalidInputError,
        match=r"^the page cursor 'after' pages the newest-first order only: not sort 'name' "
        r"ascending$",
    ):
        store.find(JobQuery(sort="name", ascending=True, after="a_1"))
    with pytest.raises(InvalidInputError, match=r"not sort 'created_at' ascending$"):
        store.find(JobQuery(ascending=True, after="a_1"))
    with pytest.raises(InvalidInputError, match=r"not sort 'runtime'$"):
        store.find(JobQuery(sort="runtime", after="a_1"))


def _append(store: Store) -> object:
    return store.append_message("job", "x\n", utcnow())


def _delete(store: Store) -> object:
    return store.delete("job")


def _beat(store: Store) -> object:
    store.heartbeat("celery@w", hostname="h", pid=1, at=utcnow())
    return None


def _presume_ended(store: Store) -> object:
    now = utcnow()
    return store.presume_queued_ended(queues=["q"], created_before=now, celery_state="LOST",
                                      note="gone", at=now)  # fmt: skip


def _note_revoked(store: Store) -> object:
    return store.note_revoked(["job"], celery_state="REVOKING", note="revoke sent", at=utcnow())


@pytest.mark.parametrize("write", [_append, _delete, _beat, _presume_ended, _note_revoked])
def test_a_write_that_cannot_reach_the_database_says_it_could_not_write(
    write: Callable[[Store], object],
) -> None:
    """What a worker logs when the store is down (a heartbeat, a note, a revoke) says which
    way it failed: a write, not a read (a user granted SELECT only would look elsewhere)."""
    store = store_for("postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError) as caught:
        write(store)
    assert caught.value.retryable
    assert str(caught.value).startswith(
        "could not write jobs in postgresql+psycopg://nobody@127.0.0.1:1/nowhere: "
    )


def test_a_revoke_notes_the_jobs_still_waiting_and_counts_them(store: Store) -> None:
    for job_id, state in (("waits", "pending"), ("runs", "running"), ("done", "finished")):
        transition(job_id, state, {})
    now = utcnow()
    ids = ["waits", "runs", "done", "unknown"]
    assert store.note_revoked(ids, celery_state="REVOKING", note="revoke sent", at=now) == 2
    assert store.note_revoked([], celery_state="REVOKING", note="revoke sent", at=now) == 0


def _read_metrics(store: Store, now: datetime) -> dict[str, object]:
    return store.metrics_rows(now=now, since=now - timedelta(hours=1), buckets=(1.0, 10.0))


def _read_report(store: Store, now: datetime) -> dict[str, object]:
    since = now - timedelta(hours=1)
    return store.report_rows(since=since, until=now, slow_before=now, slow_limit=10)


@pytest.mark.parametrize("read", [_read_metrics, _read_report])
def test_a_read_of_the_figures_is_one_snapshot_while_jobs_are_published(
    store: Store, read: Callable[[Store, datetime], dict[str, object]]
) -> None:
    """The report and the metrics read the aggregates, the changes no fold has moved and the
    waiting jobs in several statements: a job published meanwhile is in none of the figures,
    not counted in one and missing from another. On MariaDB, also when the server's default
    isolation is lower (READ COMMITTED, as some MySQL setups have it)."""
    reader = store
    if store.engine.dialect.name in ("mysql", "mariadb"):
        lowered = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
        reader = Store(store.url.update_query_dict({"init_command": lowered}))
    try:
        _read_while_a_job_is_published(store, reader, read)
    finally:
        if reader is not store:
            reader.dispose()


def _read_while_a_job_is_published(
    store: Store, reader: Store, read: Callable[[Store, datetime], dict[str, object]]
) -> None:
    now = utcnow().replace(microsecond=0)
    _published(store, "before", "shop.a", now - timedelta(minutes=1), None)
    unseen = read(reader, now)
    publisher = Store(store.url)
    pending = True

    def publish_during_the_read(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        nonlocal pending
        if pending and statement.lstrip().upper().startswith("SELECT"):  # the read's first
            pending = False
            _published(publisher, "during", "shop.b", now - timedelta(minutes=2), None)

    sa.event.listen(reader.engine, "after_cursor_execute", publish_during_the_read)
    try:
        during = read(reader, now)
    finally:
        sa.event.remove(reader.engine, "after_cursor_execute", publish_during_the_read)
        publisher.dispose()
    assert not pending, "nothing was published during the read"
    assert during == unseen
    assert read(reader, now) != unseen  # the next read sees it


def test_a_read_waits_for_the_writes_queued_in_this_process_it_was_told_to_expect(
    store: Store,
) -> None:
    """As the "async" publish mode does: publishes queue for a writer thread, and a read here
    first waits for them, so that it finds the job just published."""
    fresh = Store(store.url)
    publishes = Recorder(fresh, Mode(batched=True, interval=60.0))
    fresh.expect(publishes)
    at = utcnow()
    publishes.submit(lifecycle.published("queued", name="shop.a", user=None, request="",
                                         queue=None, lineage=lifecycle.Lineage(), retries=0,
                                         eta=None, delivery=None, at=at))  # fmt: skip
    job = fresh.get("queued")
    assert job is not None and job.name == "shop.a"
    assert publishes.drain(timeout=10) == 0
    fresh.dispose()


def test_a_fold_moves_the_changes_a_batch_at_a_time_up_to_its_limit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's heart folds at most a limit per round, larger than one batch: every batch
    counts, the last one is cut to the limit, and a fold with no limit goes on to the end."""
    monkeypatch.setattr(stats, "FOLD_BATCH", 4)
    assert store.fold_stats() == 0  # nothing logged yet
    for i in range(12):
        transition(f"f{i}", "finished", {"name": "t"})

    def unfolded() -> int:
        with store.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(stat_log)))

    logged = unfolded()
    assert logged >= 12  # a change at least for each job
    assert store.fold_stats(limit=6) == 6
    assert unfolded() == logged - 6
    assert store.fold_stats(limit=3) == 3
    assert store.fold_stats() == logged - 9
    assert store.fold_stats() == 0
