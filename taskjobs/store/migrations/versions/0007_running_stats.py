"""Running aggregates for the report and the metrics: ``taskjobs_stats``, kept up to date from
``taskjobs_stat_changes``, which the database itself fills on every insert, delete or relevant
update of a job (one trigger per event, in each dialect's own syntax), so that every writer
(the Celery layer, ``setJob``, purges, expiry, a hand-written ``DELETE``) keeps them exact.

The existing jobs are copied into the changes as they are; the first fold (``taskjobs db
upgrade`` runs it, as does any worker's heartbeat) turns them into aggregates.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskjobs.store.tables import BigId, UTCDateTime, binary_collation

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JOBS, CHANGES, STATS = "taskjobs_jobs", "taskjobs_stat_changes", "taskjobs_stats"
# The job columns a change copies; the Celery state only while the job is in error.
COPIED = ("name", "status", "worker", "exc_type", "retries", "created_at", "eta", "started_at",
          "finished_at", "runtime")  # fmt: skip
COLUMNS = (*COPIED, "celery_state")
TRIGGERS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


def _key() -> sa.String:
    return sa.String(255)


def upgrade() -> None:
    bind = op.get_bind()
    options = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB",
               **binary_collation(bind.dialect)}  # fmt: skip
    op.create_table(
        CHANGES,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("sign", sa.SmallInteger, nullable=False),
        sa.Column("name", _key(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", _key(), nullable=True),
        sa.Column("exc_type", _key(), nullable=True),
        sa.Column("celery_state", sa.String(32), nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("eta", UTCDateTime, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("runtime", sa.Float, nullable=True),
        **options,
    )
    op.create_table(
        STATS,
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("width", sa.Integer, primary_key=True),
        sa.Column("bucket_start", UTCDateTime, primary_key=True),
        sa.Column("name", _key(), primary_key=True),
        sa.Column("label", _key(), primary_key=True),
        sa.Column("jobs", sa.BigInteger, nullable=False),
        sa.Column("total", sa.Double, nullable=False),
        **options,
    )
    for statement in _trigger_ddl(bind.dialect.name):
        op.execute(statement)
    # The jobs already stored, as if each had just been inserted.
    op.execute(
        f"INSERT INTO {CHANGES} (sign, {', '.join(COLUMNS)}) "
        f"SELECT 1, {', '.join(COPIED)}, {_error_state('')} FROM {JOBS}"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for event in TRIGGERS:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS taskjobs_stats_{event} ON {JOBS}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS taskjobs_stats_{event}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS taskjobs_note_stat_change()")
    op.drop_table(STATS)
    op.drop_table(CHANGES)


def _error_state(row: str) -> str:
    """SQL for the Celery state a change copies from ``row`` (``NEW.``, ``OLD.`` or none)."""
    return f"CASE WHEN {row}status = 'error' THEN {row}celery_state END"


def _values(row: str, sign: int) -> str:
    return ", ".join([str(sign), *(f"{row}{column}" for column in COPIED), _error_state(row)])


def _insert(row: str, sign: int) -> str:
    return f"INSERT INTO {CHANGES} (sign, {', '.join(COLUMNS)}) VALUES ({_values(row, sign)})"


def _changed(same: str) -> str:
    """SQL that is true when an update changed a copied value; ``same`` spells the dialect's
    NULL-safe equality of its two operands."""
    pairs = [(f"OLD.{c}", f"NEW.{c}") for c in COPIED]
    pairs.append((_error_state("OLD."), _error_state("NEW.")))
    return "NOT (" + " AND ".join(same.format(old, new) for old, new in pairs) + ")"


def _trigger_ddl(dialect: str) -> list[str]:
    """The statements that make the database log every change of a job's figures."""
    if dialect == "postgresql":
        function = f"""
            CREATE FUNCTION taskjobs_note_stat_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {_insert("NEW.", 1)};
                ELSIF TG_OP = 'DELETE' THEN
                    {_insert("OLD.", -1)};
                ELSE
                    INSERT INTO {CHANGES} (sign, {", ".join(COLUMNS)})
                    VALUES ({_values("OLD.", -1)}), ({_values("NEW.", 1)});
                END IF;
                RETURN NULL;
            END $$"""
        changed = _changed("({0}) IS NOT DISTINCT FROM ({1})")
        return [
            function,
            f"CREATE TRIGGER taskjobs_stats_insert AFTER INSERT ON {JOBS} FOR EACH ROW "
            "EXECUTE FUNCTION taskjobs_note_stat_change()",
            f"CREATE TRIGGER taskjobs_stats_update AFTER UPDATE ON {JOBS} FOR EACH ROW "
            f"WHEN ({changed}) EXECUTE FUNCTION taskjobs_note_stat_change()",
            f"CREATE TRIGGER taskjobs_stats_delete AFTER DELETE ON {JOBS} FOR EACH ROW "
            "EXECUTE FUNCTION taskjobs_note_stat_change()",
        ]
    if dialect in ("mysql", "mariadb"):
        changed = _changed("({0}) <=> ({1})")
        return [
            f"CREATE TRIGGER taskjobs_stats_insert AFTER INSERT ON {JOBS} FOR EACH ROW "
            f"{_insert('NEW.', 1)}",
            f"CREATE TRIGGER taskjobs_stats_update AFTER UPDATE ON {JOBS} FOR EACH ROW "
            f"BEGIN IF {changed} THEN INSERT INTO {CHANGES} (sign, {', '.join(COLUMNS)}) "
            f"VALUES ({_values('OLD.', -1)}), ({_values('NEW.', 1)}); END IF; END",
            f"CREATE TRIGGER taskjobs_stats_delete AFTER DELETE ON {JOBS} FOR EACH ROW "
            f"{_insert('OLD.', -1)}",
        ]
    changed = _changed("({0}) IS ({1})")
    return [
        f"CREATE TRIGGER taskjobs_stats_insert AFTER INSERT ON {JOBS} FOR EACH ROW "
        f"BEGIN {_insert('NEW.', 1)}; END",
        f"CREATE TRIGGER taskjobs_stats_update AFTER UPDATE ON {JOBS} FOR EACH ROW "
        f"WHEN {changed} BEGIN {_insert('OLD.', -1)}; {_insert('NEW.', 1)}; END",
        f"CREATE TRIGGER taskjobs_stats_delete AFTER DELETE ON {JOBS} FOR EACH ROW "
        f"BEGIN {_insert('OLD.', -1)}; END",
    ]
