"""The studio's database: a versioned SQLAlchemy schema, SQLite by default, any SQLAlchemy URL accepted.

Tables (schema version 1)::

    meta          key, value                    schema_version, index path, created
    passages      id, doc_id, title, text, position      passages shown to writers (stored when first shown)
    documents     id, title, text               index documents that entered a pool (what export writes)
    annotations   id, passage_id, annotator, kind, question, answer_start, answer_text, created_at
                  kind: question (an answer span), unanswerable (SQuAD v2), no_question (no good question)
    queries       id, text, source, annotation_id, annotator, created_at     source: written | file
    pool          query_id, system, rank, doc_id          each pooled system's top k
    pool_order    query_id, doc_id, position              the shuffled list the judge sees
    judgements    id, query_id, doc_id, annotator, grade, created_at, updated_at   grade: 2, 1, 0

SQLite runs in WAL mode with ``synchronous=FULL`` and a busy timeout, and every write is one ``BEGIN IMMEDIATE``
transaction, so several experts (threads or processes) can write at once and a killed server loses only the
write it had not committed. A database written by another schema version is refused with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from indus.errors import IndusError

SCHEMA_VERSION = 1
GRADES = {2: "relevant", 1: "partly", 0: "not relevant"}
KINDS = ("question", "unanswerable", "no_question")
BUSY_TIMEOUT_MS = 15_000

metadata = MetaData()

meta = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
passages = Table(
    "passages",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("doc_id", String(255), nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("position", Integer, nullable=False),
)
documents = Table(
    "documents",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
)
annotations = Table(
    "annotations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("passage_id", String(255), ForeignKey("passages.id"), nullable=False, index=True),
    Column("annotator", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("question", Text),
    Column("answer_start", Integer),
    Column("answer_text", Text),
    Column("created_at", String(32), nullable=False),
)
queries = Table(
    "queries",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("text", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("annotation_id", Integer, ForeignKey("annotations.id")),
    Column("annotator", String(64)),
    Column("created_at", String(32), nullable=False),
)
pool = Table(
    "pool",
    metadata,
    Column("query_id", String(255), ForeignKey("queries.id"), primary_key=True),
    Column("system", String(255), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("doc_id", String(255), ForeignKey("documents.id"), nullable=False),
)
pool_order = Table(
    "pool_order",
    metadata,
    Column("query_id", String(255), ForeignKey("queries.id"), primary_key=True),
    Column("doc_id", String(255), ForeignKey("documents.id"), primary_key=True),
    Column("position", Integer, nullable=False),
)
judgements = Table(
    "judgements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("query_id", String(255), ForeignKey("queries.id"), nullable=False, index=True),
    Column("doc_id", String(255), ForeignKey("documents.id"), nullable=False),
    Column("annotator", String(64), nullable=False, index=True),
    Column("grade", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    UniqueConstraint("query_id", "doc_id", "annotator", name="one_judgement_per_annotator"),
)


def now() -> str:
    """The current UTC time, ISO 8601 to the millisecond (what every annotation records)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from ``db``: a URL (``sqlite:///...``, ``postgresql://...``) or a file path (SQLite)."""
    db = str(db)
    return db if "://" in db else f"sqlite:///{Path(db).expanduser().resolve()}"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # the driver must not open transactions: the begin hook below does
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, the writer never blocks readers
        cur.execute("PRAGMA synchronous = FULL")  # a committed annotation is on disk before the reply goes out
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a write takes the lock up front: a deferred transaction that upgrades to a write can fail at once with
        # "database is locked" instead of waiting out the busy timeout
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


class Store:
    """The database behind a studio: open (and create or check) it with :meth:`open`.

    Use :meth:`read` for a consistent snapshot and :meth:`write` for one atomic write transaction.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, db: str | Path, *, create: bool = True) -> Store:
        """Open the database at ``db`` (a path or a SQLAlchemy URL); create the schema when it is empty."""
        url = database_url(db)
        try:
            if url.startswith("sqlite"):
                if not url.startswith("sqlite:///:memory:") and url.startswith("sqlite:///"):
                    parent = Path(url.removeprefix("sqlite:///")).parent
                    if not parent.is_dir():
                        raise IndusError(f"{parent}: folder for the database not found")
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
                )
                _sqlite_setup(engine)
            else:
                engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise IndusError(f"{db}: not a usable database URL ({exc})") from None
        store = cls(engine)
        store._check_schema(create)
        return store

    def _check_schema(self, create: bool) -> None:
        try:
            names = set(inspect(self.engine).get_table_names())
        except OperationalError as exc:
            raise IndusError(f"{self.engine.url}: cannot open the database ({exc.orig})") from None
        if "meta" not in names:
            if names - {"meta"}:
                raise IndusError(f"{self.engine.url}: holds tables that are not an indus studio database")
            if not create:
                raise IndusError(f"{self.engine.url}: not an indus studio database (no meta table)")
            with self.write() as conn:
                metadata.create_all(conn)
                conn.execute(
                    meta.insert(),
                    [{"key": "schema_version", "value": str(SCHEMA_VERSION)}, {"key": "created", "value": now()}],
                )
            return
        version = self.get_meta("schema_version")
        if version != str(SCHEMA_VERSION):
            raise IndusError(
                f"{self.engine.url}: studio schema version {version}; this indus reads version {SCHEMA_VERSION}"
            )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside one read transaction."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside one write transaction, committed on exit (rolled back on an exception)."""
        with self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or ``None``."""
        with self.read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        with self.write() as conn:
            if conn.execute(select(meta.c.key).where(meta.c.key == key)).first():
                conn.execute(meta.update().where(meta.c.key == key).values(value=value))
            else:
                conn.execute(meta.insert().values(key=key, value=value))

    def integrity_ok(self) -> bool:
        """SQLite's ``PRAGMA integrity_check`` (always ``True`` for other databases)."""
        if self.engine.dialect.name != "sqlite":
            return True
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()
