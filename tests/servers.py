"""Real servers for the team-setup tests: a PostgreSQL started for the session, and `mlflow server` on
127.0.0.1 against it, with its artifacts destination in a temp folder (docs/architecture.md, team setup).

    from servers import mlflow_server   # noqa: F401 - the fixture, in a test module
    def test_x(mlflow_server): mlflow_server.uri, .postgres_uri, .artifacts

PostgreSQL's initdb and server refuse to run as root (CI runs as root): as root they run as the
`postgres` user (`runuser`), in a folder that user owns; as any other user they run as that user.
Nothing is mocked: real processes, torn down at the end of the session (the server's process group
terminated, `pg_ctl stop -m fast`, the folders removed).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_extra

NO_POSTGRES = "PostgreSQL server binaries not found (apt install postgresql)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH (links followed), else Debian's
    /usr/lib/postgresql/<version>/bin (the newest), else None."""
    candidates = [Path(p).resolve().parent for p in filter(None, [shutil.which("initdb")])]
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "createdb")):
            return folder
    return None


@dataclass
class Postgres:
    bin: Path
    home: Path  # owned by the user the server runs as: data/, the unix socket, the log
    port: int
    as_user: list[str]  # the command prefix that runs a tool as that user ([] when it is us)

    def tool(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.as_user, str(self.bin / name), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)
        if done.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}"
                               + self.log_tail())
        return done

    def log_tail(self) -> str:
        log = self.home / "postgres.log"
        return "\nserver log:\n" + log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def uri(self, database: str) -> str:
        """The SQLAlchemy URI MLflow needs: the psycopg (3) driver, as harness[postgres] installs."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


def start_postgres() -> Postgres:
    """initdb + pg_ctl start on a free port of 127.0.0.1 (trust authentication, local only)."""
    folder = postgres_bin()
    if folder is None:
        pytest.skip(NO_POSTGRES)
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # not under pytest's root-only tmp: postgres enters it
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(home)
            pytest.skip("running as root, and there is no `postgres` user to run PostgreSQL as (initdb "
                        "refuses root); the postgresql package creates it")
        os.chown(home, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    pg = Postgres(folder, home, free_port(), as_user)
    pg.tool("initdb", "-D", str(home / "data"), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
    options = (f"-p {pg.port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off "
               f"-c synchronous_commit=off -c full_page_writes=off")
    pg.tool("pg_ctl", "-D", str(home / "data"), "-o", options, "-l", str(home / "postgres.log"), "-w",
            "-t", "60", "start")
    return pg


def stop_postgres(pg: Postgres) -> None:
    try:
        pg.tool("pg_ctl", "-D", str(pg.home / "data"), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(pg.home, ignore_errors=True)


@dataclass
class MlflowServer:
    uri: str  # http://127.0.0.1:PORT
    postgres_uri: str  # its backend store
    artifacts: Path  # its --artifacts-destination
    proc: subprocess.Popen
    log: Path


def start_mlflow_server(backend: str, artifacts: Path, log: Path, workers: int = 2,
                        timeout_s: float = 180) -> MlflowServer:
    """`mlflow server` on a free port of 127.0.0.1, serving artifacts from `artifacts`; returns once
    /health answers (the first start migrates the database: seconds)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", backend, artifacts, proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    stop_mlflow_server(server)
    raise RuntimeError(f"mlflow server did not answer /health within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_mlflow_server(server: MlflowServer) -> None:
    """SIGTERM to its process group (mlflow, uvicorn and its workers), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def postgres():
    require_extra("psycopg")  # every test of a PostgreSQL store speaks to it through psycopg
    pg = start_postgres()
    try:
        yield pg
    finally:
        stop_postgres(pg)


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory):
    """A team's tracking server: `mlflow server` against a fresh PostgreSQL database, artifacts
    proxied to a temp folder."""
    postgres.tool("createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "mlflow")
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = start_mlflow_server(postgres.uri("mlflow"), folder / "artifacts", folder / "server.log")
    try:
        yield server
    finally:
        stop_mlflow_server(server)
