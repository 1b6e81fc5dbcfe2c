"""The registry's database: which URL, the engine (SQLite in WAL mode with a busy timeout, every write transaction
taking the write lock up front; PostgreSQL with a connect timeout), and its schema brought to the newest revision
with the Alembic migrations shipped in migrations/ (an old registry is migrated, never broken)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: SQLite's own busy timeout alone
    fcntl = None

import sqlalchemy as sa
from sqlalchemy import event

from ..errors import UsageError
from .schema import HEAD

ENV = "TAMER_REGISTRY_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 60_000
WRITE = "tamer_write"  # execution option of a write transaction: writers(engine).begin()


class RegistryUnavailable(UsageError):
    """The registry's database cannot be opened, reached or migrated (exit code 2 for the registry commands)."""


def default_url() -> str:
    """$TAMER_REGISTRY_URL, else the SQLite file .tamer/registry.db under the working directory."""
    return os.environ.get(ENV) or f"sqlite:///{Path.cwd() / '.tamer' / 'registry.db'}"


def shown(url: sa.URL | str) -> str:
    """A URL as it may be printed: the password masked."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL has no password part we could find
        return str(url).split("@")[-1] if "@" in str(url) else str(url)


def _sqlite_pragmas(dbapi_connection, record) -> None:
    dbapi_connection.isolation_level = None  # sqlite3 must not open transactions itself: _begin_immediate does
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable across a process kill; WAL keeps the file consistent
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin(conn) -> None:
    """A write transaction (engine option WRITE) takes SQLite's write lock when it begins, so two writers queue on
    the busy timeout instead of one failing when it upgrades a read lock (SQLITE_BUSY is not retried there); a read
    takes no lock until it reads, and WAL lets it read beside a writer."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def make_engine(url: str | None = None) -> sa.Engine:
    """An engine on `url` (default: default_url()); the SQLite file's folder is made. Nothing is connected yet."""
    text = url or default_url()
    try:
        parsed = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise RegistryUnavailable(f"registry URL {shown(text)!r} is not a database URL; give one like "
                                  f"sqlite:///PATH/registry.db or postgresql+psycopg://USER@HOST/DB.") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise RegistryUnavailable(f"registry URL {shown(parsed)!r} names database {backend!r}; tamer's registry runs "
                                  f"on sqlite and postgresql.")
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                try:
                    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise RegistryUnavailable(f"the registry file {parsed.database!r} cannot be created "
                                              f"({exc.strerror}); set {ENV} to a writable place.") from None
            engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _begin)
            return engine
        return sa.create_engine(parsed, connect_args={"connect_timeout": 5}, pool_pre_ping=True)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise RegistryUnavailable(f"registry URL {shown(parsed)!r} needs a database driver that is not installed "
                                  f"({exc}); for PostgreSQL install psycopg and use postgresql+psycopg://.") from None


@contextlib.contextmanager
def write_lock(engine: sa.Engine) -> Iterator[None]:
    """On a SQLite file, an exclusive flock on FILE.lock around each write transaction: a waiting writer wakes the
    moment the other one finishes, where SQLite's busy handler would sleep in growing steps (up to 100 ms) and
    poll. The kernel drops the lock of a killed process. Elsewhere (PostgreSQL, in memory) nothing."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    with open(f"{database}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def writer(engine: sa.Engine) -> sa.Engine:
    """The engine whose transactions are write transactions (on SQLite: BEGIN IMMEDIATE)."""
    return engine.execution_options(**{WRITE: True})


def revision(conn: sa.Connection) -> str | None:
    """The schema revision the database says it is at (None: no registry there yet)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: sa.Engine, target: str = "head") -> None:
    """Bring the database's schema to `target` with the shipped migrations, in one transaction (two processes
    opening a new registry at once: the second finds it done). Skipped when it is already at HEAD."""
    with engine.connect() as conn:
        current = revision(conn)
        conn.rollback()
    if current == HEAD and target == "head":
        return
    known = {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("*.py")}
    if current is not None and current not in known:
        raise RegistryUnavailable(f"the registry at {shown(engine.url)} has schema revision {current!r}, which this "
                                  f"tamer does not know (it reads up to {HEAD}); upgrade tamer to open it.")
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writer(engine).begin() as conn:
        if engine.dialect.name == "postgresql":  # one migrator at a time; SQLite's BEGIN IMMEDIATE already is
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7366121)"))
        config.attributes["connection"] = conn
        command.upgrade(config, target)


def script_head() -> str:
    """The newest revision among the shipped migrations, as Alembic reads them."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
