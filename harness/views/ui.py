"""`python -m harness ui`: the MLflow UI, on 127.0.0.1, against the store `run` writes.

    python -m harness ui [--port 5000] [--results DIR | --tracking-uri URI]

Starts `mlflow server` as a child process (in its own process group, so that stopping it stops its
uvicorn worker too), prints the URL and the URL of the newest experiment's runs (the experiment
whose latest run started last), and waits; Ctrl-C (or SIGTERM) stops the server and returns 0.
The server is MLflow's own command line; mlflow is imported (through harness.track) only to find
the newest experiment.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from harness.core.errors import UserError

HOST = "127.0.0.1"  # never 0.0.0.0: the UI has no authentication


def store_uri(tracking_uri: str | None, results_root: Path) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the SQLite store under the results root; a
    local SQLite store that does not exist yet is an input error (nothing has been run there)."""
    if tracking_uri is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        db = Path(results_root).resolve() / "mlflow.db"
        if not db.is_file():
            raise UserError(f"{db}: no MLflow store yet; run a suite first (python -m harness run "
                            f"suites/smoke.yaml --out {results_root}), or give --tracking-uri")
        return f"sqlite:///{db}"
    uri = tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"{uri}: no such MLflow store (the SQLite file does not exist)")
    return uri


def serve(tracking_uri: str, port: int, results_root: Path | None = None) -> int:
    """Run the MLflow UI until Ctrl-C; the exit code of the server, 0 when stopped by the user."""
    if tracking_uri.startswith(("http://", "https://")):
        raise UserError(f"{tracking_uri}: is already a tracking server; open it in a browser")
    _check_port(port)
    from harness.track.store import open_store

    open_store(tracking_uri, create=False)  # a damaged store, or another program's database: exit 2, named
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    if results_root is not None:  # experiments created from the UI keep their artifacts beside run's
        cmd += ["--artifacts-destination", str(Path(results_root).resolve() / "mlartifacts")]
    # MLflow's job runner (GenAI evaluation jobs, seven worker processes) is of no use for browsing runs
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    from harness.track.experiments import newest_experiment, runs_url

    newest = newest_experiment(tracking_uri)  # read before the server starts: the UI opens on its runs
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    print(f"MLflow UI: http://{HOST}:{port}  (store {tracking_uri}); Ctrl-C to stop", flush=True)
    if newest:
        print(f"newest experiment {newest[1]!r}: {runs_url(f'http://{HOST}:{port}', newest[0])}", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        print("MLflow UI stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            _stop(proc)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port (1-65535)")
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise UserError(f"--port {port}: {HOST}:{port} is in use; pick another port with --port") from None


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow and its uvicorn), SIGKILL after 15 s."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
