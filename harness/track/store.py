"""The MLflow store behind a tracking URI: checked before anything is logged, and the embedded SQLite
store created safely.

    open_store("sqlite:///results/mlflow.db")      # creates it if missing; exit 2 if it is broken
    open_store("http://host:5000")                 # exit 2 within seconds if nothing answers

- **SQLite** (`run`'s default store, `<results root>/mlflow.db`): a new store is created under an
  exclusive lock (`.mlflow.db.lock` beside it), migrated in a temp file and renamed into place, so
  several `run`s started at once into a fresh results root all find one complete store, and a kill
  during creation leaves only a temp file and SQLite's journal of it (removed by the next command that
  opens the store, unless a creator holds the lock), never a half-migrated store
  that every later command fails on. A path that is a directory, a file that is not an SQLite
  database, or a database MLflow cannot open (damaged, another schema) is a UserError naming the
  file and how to recover.
- **HTTP(S)** (`mlflow server`): one request with a short timeout; no answer is a UserError at once
  instead of minutes of MLflow's retries. MLflow's own retries during a run are shortened too
  (unless the user set them), since a failing call no longer stops the run (harness.run.journal).
- **PostgreSQL** (`postgresql+psycopg://user@host:5432/db`, the driver from `pip install
  'harness[postgres]'`): the driver is checked first (`postgresql://` alone means psycopg2 to
  SQLAlchemy: without it the message gives the `postgresql+psycopg://` spelling to use, here and
  for `mlflow server`; the URI is not rewritten behind the user's back), then one connection with a
  short timeout (MLflow itself retries for about 100 s), then MLflow opens it while that connection
  holds a PostgreSQL advisory lock (`pg_advisory_lock(CREATE_LOCK)`, a session lock: released when
  the connection closes or its process dies). MLflow creates and migrates an empty database without
  a lock of its own, so `run --shard I/N` started on several machines at once into a fresh database
  raced (all but one exited with "duplicate key value violates unique constraint
  pg_type_typname_nsp_index"); under the lock the first creates the schema and the others wait, then
  find it complete. Only processes that take the lock are serialised: an `mlflow server` or `mlflow
  db upgrade` started on the same empty database at that moment is not. Passwords are shown as `***`.
  Artifacts of a direct database store stay under the client's results root (nothing else is
  reachable without a server); a team shares a server instead (harness.track.tracking).
- Other stores (MySQL URIs, file stores) are opened by MLflow as they are; a failure to open one is
  reported the same way. A fresh MySQL database has the same race (MySQL's DDL is not even
  transactional); its counterpart of the lock would be `GET_LOCK(name, timeout)`, not done here, as
  no MySQL server is at hand to test it: create the schema once first (`mlflow db upgrade URI`, or
  one `run`) before starting many processes on it.
- **Many writers**: `run --shard I/N` (N > 1) would write into one SQLite file from many processes
  (and machines) at once: `refuse_shared_sqlite` stops that before anything is created, pointing at
  `--no-tracking` + `sync` or a tracking server. Under torchrun rank 0 alone writes, and `launch`
  syncs its offline shards from one process: one writer each, so SQLite serves them.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from harness.core.errors import UserError

PROBE_TIMEOUT_S = 5.0
# pg_advisory_lock's key while a PostgreSQL store is opened (created and migrated when empty): the bytes
# b"harness\x01" as a bigint. Advisory locks are per database, so one key serves every store; the wait
# is bounded (PostgreSQL's lock_timeout) so a stuck creator ends in a message, not a hang.
CREATE_LOCK = int.from_bytes(b"harness\x01", "big")
CREATE_LOCK_TIMEOUT_S = 300
SQLITE_HEADER = b"SQLite format 3\x00"
# MLflow's HTTP client retries 7 times with backoff (minutes) by default; the journal keeps every call,
# so a run rather carries on quickly and is synced later (set these variables to override).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def open_store(uri: str, *, create: bool = True, flag: str = "--tracking-uri") -> None:
    """Check the store at `uri` answers and is an MLflow store (creating a missing SQLite store
    unless `create` is False); raise UserError naming it and the fix otherwise."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            _sqlite(uri, path, create, flag)
            return
    elif scheme in ("http", "https"):
        for k, v in HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
        _probe_http(uri, flag)
        return
    elif scheme.partition("+")[0] in ("postgresql", "postgres"):
        with _postgres(uri, flag):  # connected, holding the store's creation lock
            _check_opens(uri, _redact(uri), flag)  # MLflow creates and migrates an empty database here
        return
    _check_opens(uri, _redact(uri), flag)


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///path` URI (None for an in-memory store)."""
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    return Path("/" + path.lstrip("/")) if rest.startswith("////") else Path(path)


def _sqlite(uri: str, path: Path, create: bool, flag: str) -> None:
    recover = (f"move it aside (mv {path} {path}.broken) and a new, empty store is created on the next "
               f"run (its runs can be logged again with `python -m harness sync RUN_DIR`), or point "
               f"{flag} at another store")
    if path.is_dir():
        raise UserError(f"MLflow store {path}: is a directory, not an SQLite file; {recover}")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise UserError(f"MLflow store {path}: not an SQLite database (damaged, or another file); {recover}")
        _check_mlflow_tables(path, recover)
        _check_opens(uri, str(path), flag, recover)
        _clear_stale(path)
        return
    if not create:
        raise UserError(f"MLflow store {path}: does not exist; check {flag} (or --out)")
    _create_sqlite(path, flag)


MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


def _check_mlflow_tables(path: Path, recover: str) -> None:
    """An SQLite file holding another program's tables is not a store: MLflow would add its own
    tables to it (a migration) and use it, changing a file that is not its own. Read-only."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise UserError(f"MLflow store {path}: a damaged SQLite database ({e}); {recover}") from None
    if tables and not MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
        raise UserError(f"MLflow store {path}: an SQLite database of another program (its tables: {shown}; "
                        f"an MLflow store has {', '.join(sorted(MLFLOW_TABLES))}); point the store elsewhere "
                        f"(--tracking-uri, or --out for the default store)")


def _create_sqlite(path: Path, flag: str) -> None:
    """Create and migrate the store in a temp file under a lock, then rename it into place."""
    import fcntl

    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = open(parent / f".{path.name}.lock", "a")  # noqa: SIM115 - held until the store exists
    except OSError as e:
        raise UserError(f"MLflow store {path}: cannot create it ({e.strerror}); check {flag} or --out") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the process dies, even on kill -9
        if path.exists() and path.stat().st_size > 0:  # another process made it while we waited
            return
        _remove_stale(path)  # under the lock: no creator is at work
        tmp = parent / f".{path.name}.{os.getpid()}.creating"
        try:
            _check_opens(f"sqlite:///{tmp.resolve()}", str(path), flag)  # runs MLflow's migrations
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _stale(path: Path) -> list[Path]:
    """What creators killed while making the store left beside it: the temp store and SQLite's files
    of it (`.mlflow.db.<pid>.creating`, `-journal`, `-wal`, `-shm`)."""
    return list(path.parent.glob(f".{path.name}.*.creating*"))


def _remove_stale(path: Path) -> None:
    for stale in _stale(path):
        stale.unlink(missing_ok=True)


def _clear_stale(path: Path) -> None:
    """A store that exists: remove what killed creators left beside it, if no creator holds the lock
    (one that is making a store there now, on this machine or another sharing the folder, keeps its
    files; a pid says nothing across machines, the lock does)."""
    import fcntl

    if not _stale(path):
        return
    try:
        with open(path.parent / f".{path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _remove_stale(path)
    except OSError:  # held (a creator at work), or a folder this process cannot write: left alone
        pass


def _check_opens(uri: str, shown: str, flag: str, recover: str | None = None) -> None:
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - sqlalchemy, alembic, MLflow: all mean "cannot use this store"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"MLflow store {shown}: cannot be opened ({type(e).__name__}: {first[:300]}); "
                        f"{recover or f'check {flag}'}") from None


def _probe_http(uri: str, flag: str) -> None:
    """One request, PROBE_TIMEOUT_S: any HTTP answer (even 401) means a server is there."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with contextlib.closing(urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S)):
            return
    except urllib.error.HTTPError as e:
        if e.code < 500:
            return
        why = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, OSError) as e:
        why = str(getattr(e, "reason", e))
    raise UserError(f"{flag} {uri}: the tracking server does not answer ({why}, within {PROBE_TIMEOUT_S:.0f} s); "
                    f"start it (mlflow server --host ... --port ...) or fix the URI, or run with --no-tracking "
                    f"and log the run later with `python -m harness sync RUN_DIR`")


def _redact(uri: str) -> str:
    from harness.run.rundir import redact

    return redact(uri)


@contextlib.contextmanager
def _postgres(uri: str, flag: str):
    """The driver installed, then one connection within PROBE_TIMEOUT_S (a UserError otherwise), held
    with CREATE_LOCK while the caller opens the store: MLflow creates and migrates an empty database
    without a lock of its own, so of several processes (or machines) opening a fresh database at once
    the first creates the schema and the others wait, then find it complete. The lock is a session
    lock: it goes with the connection, also when the process is killed."""
    import importlib
    import importlib.util

    scheme = urlsplit(uri).scheme
    base, _, driver = scheme.lower().partition("+")
    shown = _redact(uri)
    fixed = _redact("postgresql+psycopg" + uri[len(scheme):])
    install = "pip install 'harness[postgres]'"
    if base == "postgres" or (driver in ("", "psycopg2") and importlib.util.find_spec("psycopg2") is None):
        why = ("`postgres://` is not a scheme SQLAlchemy knows" if base == "postgres" else
               f"`{scheme}://` means the psycopg2 driver to SQLAlchemy, and it is not installed")
        raise UserError(f"{flag} {shown}: {why}; write {fixed} (the psycopg driver, from {install}); "
                        f"`mlflow server --backend-store-uri` takes the same spelling")
    if driver == "psycopg" and importlib.util.find_spec("psycopg") is None:
        raise UserError(f"{flag} {shown}: the psycopg driver is not installed; {install}")
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    for module in ("mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store"):  # seconds: not under the lock
        importlib.import_module(module)
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                          connect_args={"connect_timeout": int(PROBE_TIMEOUT_S)})
        connection = engine.connect()
    except ImportError as e:  # psycopg present but unusable (no libpq, no binary wheel)
        raise UserError(f"{flag} {shown}: the PostgreSQL driver cannot be loaded ({e}); {install}") from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy/psycopg: refused, unknown host, bad password, no database
        raise UserError(f"{flag} {shown}: PostgreSQL does not answer or refuses the connection ({_first(e)}); "
                        f"check the host, port, user and database (createdb), "
                        f"or run with --no-tracking and log the run later with `python -m harness sync RUN_DIR`"
                        ) from None
    try:
        try:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = '{CREATE_LOCK_TIMEOUT_S}s'"))
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": CREATE_LOCK})
        except Exception as e:  # noqa: BLE001 - LockNotAvailable after the timeout, or the connection lost
            held = type(getattr(e, "orig", e)).__name__ == "LockNotAvailable"
            why = (f"another session has held pg_advisory_lock({CREATE_LOCK}), which serialises opening and "
                   f"creating the MLflow schema, for over {CREATE_LOCK_TIMEOUT_S} s (find it in pg_locks and "
                   f"pg_stat_activity)" if held else
                   f"the connection failed while waiting for pg_advisory_lock({CREATE_LOCK}) ({_first(e)})")
            raise UserError(f"{flag} {shown}: {why}; or run with --no-tracking and log the run later with "
                            f"`python -m harness sync RUN_DIR`") from None
        yield
    finally:
        connection.close()  # ends the session, and with it the lock
        engine.dispose()


def _first(e: Exception) -> str:
    """The first line of a driver's error (SQLAlchemy wraps it in `orig`)."""
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0][:300]


def many_writers(shard=None) -> str:
    """Why this `run` is one of many processes tracking at once ("" when it is not): a shard of more
    than one (`--shard I/N`, given as "I/N", an (I, N) pair, or an object with `index` and `count`).
    A world size above 1 (torchrun) is not: rank 0 alone tracks (harness.core.distributed), and
    `launch` runs its shards with --no-tracking and syncs them from the launcher alone."""
    if isinstance(shard, str):
        index, _, count = shard.partition("/")
    elif isinstance(shard, (tuple, list)) and len(shard) == 2:
        index, count = shard
    else:
        index, count = getattr(shard, "index", "I"), getattr(shard, "count", 1)
    return f"--shard {index}/{count}" if str(count).isdigit() and int(count) > 1 else ""


def refuse_shared_sqlite(uri: str | None, why: str, out_root: Path, flag: str = "--tracking-uri") -> None:
    """A UserError when `why` (many_writers, or e.g. "launch") says many processes would track at once
    and the store is SQLite (`uri`; None: $MLFLOW_TRACKING_URI, else run's default under out_root):
    one file on one machine, which concurrent writers lock each other out of and other machines do not
    see. Called before anything is created."""
    if not why:
        return
    source = f"{flag} "
    if uri is None:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI"), "$MLFLOW_TRACKING_URI="
    if uri is None:
        uri, source = f"sqlite:///{Path(out_root).resolve() / 'mlflow.db'}", "the default store "
    if urlsplit(uri).scheme.lower() != "sqlite":
        return
    raise UserError(
        f"{why}: many processes would write live into one SQLite store ({source}{uri}) at once, which "
        f"SQLite cannot take (writers lock each other out, and other machines do not see the file). Either "
        f"run with --no-tracking and log the run directories afterwards with `python -m harness sync "
        f"RUN_DIR...`, or give {flag} http://HOST:PORT, a tracking server the processes share (mlflow server "
        f"--backend-store-uri postgresql+psycopg://USER@DBHOST/DB --artifacts-destination DIR)")
