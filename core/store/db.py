"""Engine, sessions and migrations; SQLite by default, PostgreSQL by URL.

:func:`open_database` migrates to the newest revision before returning, so
the app always runs on the schema its code expects. :func:`open_existing`
is for commands that only look (``qloop export``, ``sources list``...): it
creates nothing and migrates nothing, and refuses a store that is missing
or not at the newest revision.

Alembic (and the migration scripts) are imported only when a migration is
due: a store already at the newest revision is recognised by one plain
``SELECT`` of ``alembic_version``, so a process opening it does not carry
Alembic's modules (~11 MB) for its whole life.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.conf.masking import mask_url
from core.errors import StateError
from core.jsontext import JsonText

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass
class Database:
    """An engine and its session factory."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()


_SQLITE_CACHED_STATEMENTS = 16
"""Prepared statements each pooled SQLite connection keeps (the driver's default: 128)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value: Any) -> str:
    """The JSON text of a JSON column's value: orjson's compact text, else ``json.dumps``.

    orjson writes the same values several times faster than ``json.dumps``
    (compact, UTF-8 rather than ``\\u`` escapes: the stored text differs, it
    decodes to the same value). What orjson refuses goes to ``json.dumps``
    unchanged, so it is stored (or refused) as before: keys that are not
    strings, integers beyond 64 bits, and datetimes and dataclasses (passed
    through on purpose, as ``json.dumps`` refuses them). Non-finite floats,
    which are not JSON (PostgreSQL refuses them), become ``null``. A
    :class:`~core.jsontext.JsonText` (a pulled payload already encoded so)
    is written as its text, without decoding it.
    """
    if type(value) is JsonText:
        return value.text
    try:
        return orjson.dumps(value, option=_ORJSON_OPTS).decode()
    except TypeError:  # orjson.JSONEncodeError: not something orjson writes as json does
        return json.dumps(value)


def normalise_url(url: str, *, create: bool = True) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs; create a SQLite file's folder."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if (
        create
        and parsed.drivername.startswith("sqlite")
        and parsed.database not in (None, "", ":memory:")
    ):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def make_engine(url: str, *, create: bool = True) -> Engine:
    url = normalise_url(url, create=create)
    if url.startswith("sqlite"):
        # the driver's cache of prepared statements (128 by default) kept the loop's
        # multi-row INSERTs of many sizes, each with thousands of parameters: ~32 MB
        # at 20k incidents; 16 keeps the repeated per-row statements (same CPU)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "cached_statements": _SQLITE_CACHED_STATEMENTS},
            json_serializer=json_text,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True, json_serializer=json_text)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_session)
    return engine


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """Plan every prepared statement with its parameters (``force_custom_plan``).

    The driver prepares a statement it runs often (psycopg: from the fifth
    run), and PostgreSQL may then keep one generic plan for it. A plan made
    while a table was nearly empty (a first pull, a first collect) stays a
    sequential scan as the table grows: the collect's duplicate check ran
    ~300 ms a batch at 20k responses instead of under 1 ms by its unique
    index, and the step grew with the square of the month.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    finally:
        cursor.close()
    dbapi_connection.commit()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock file beside a SQLite database file (no-op for other databases)."""
    db = engine.url.database
    if engine.dialect.name != "sqlite" or db in (None, "", ":memory:"):
        yield
        return
    with Path(f"{db}.migrate-lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


MIGRATION_LOCK = 0x716C6F6F70
"""PostgreSQL advisory lock key held while migrating ("qloop")."""


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (Alembic).

    Every process migrates on start; on PostgreSQL they take turns under a
    transaction-scoped advisory lock, so workers starting together do not
    both create the same tables (the second finds the schema at head). SQLite
    uses a lock file beside the database. A store already at the newest
    revision is left as it is without taking the lock or importing Alembic
    (a schema at head is never downgraded by another process).
    """
    if revision == "head":
        head = _scripts_head()
        if head is not None:
            with engine.connect() as conn:
                if current_revision(conn) == head:
                    return
    from alembic import command

    cfg = _alembic_config()
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


VERSION_TABLE = "alembic_version"


def current_revision(conn: Connection) -> str | None:
    """The schema revision the store records (None: no ``alembic_version`` table or row).

    Raises:
        StateError: The store records several revisions (branches qloop does not make).
    """
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        msg = f"the store records several schema revisions: {', '.join(sorted(found))}"
        raise StateError(msg)
    return found[0] if found else None


_ASSIGN = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""^["'](\w+)["']$""")


def _scripts_head() -> str | None:
    """The newest revision, read from the migration scripts' text without importing them.

    None when the scripts do not form one plain chain (a merge, a branch, an
    assignment this reader does not understand): the caller then asks Alembic.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        text_ = script.read_text(encoding="utf-8")
        found: dict[str, str] = {m[1]: m[2] for m in _ASSIGN.finditer(text_)}
        rev = _QUOTED.match(found.get("revision", ""))
        down = found.get("down_revision")
        if rev is None or down is None:
            return None
        revisions.add(rev.group(1))
        if down != "None":
            parent = _QUOTED.match(down)
            if parent is None:
                return None
            parents.add(parent.group(1))
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def open_database(url: str, *, migrate_schema: bool = True) -> Database:
    """Create the engine, migrate to head, and return the :class:`Database`."""
    engine = make_engine(url)
    if migrate_schema:
        migrate(engine)
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def head_revision() -> str | None:
    """The newest migration revision this qloop knows."""
    head = _scripts_head()
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def open_existing(url: str) -> Database:
    """Open a store that must already exist at the newest revision; create and migrate nothing.

    Raises:
        StateError: There is no store at ``url`` yet (no SQLite file, or no
            qloop schema in the database), or its schema is older or newer
            than this qloop's.
    """
    where = mask_url(url)
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        msg = f"no store at {file} — run `qloop run` first (this command only reads the store)"
        raise StateError(msg)
    engine = make_engine(url, create=False)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    except Exception:
        engine.dispose()
        raise
    head = head_revision()
    if current != head:
        engine.dispose()
        if current is None:
            msg = f"no store at {where} — run `qloop run` first (this command only reads the store)"
        else:
            msg = (
                f"the store at {where} is at schema revision {current}, this qloop expects "
                f"{head}: run `qloop run` (or `qloop scheduler`) with this version to migrate it"
            )
        raise StateError(msg)
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
