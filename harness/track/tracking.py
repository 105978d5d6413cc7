"""MLflow tracking: an experiment per suite, a parent run per invocation, a child per experiment.

mlflow is imported by this package only (harness.track); the runner imports it lazily, and
`--no-tracking` uses `harness.run.null.NullTracker` instead, so mlflow is never imported then.
Built on `MlflowClient` alone (no fluent `mlflow.start_run`), so no global active-run state leaks
between runs or tests. Everything is logged with `log_batch`: one `log_metric` call is a separate
SQLite transaction and costs milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.track import experiments
from harness.core.errors import UserError

__all__ = ["MlflowTracker", "default_tracking_uri", "flatten"]

log = logging.getLogger(__name__)


def _not_mlflows_caught_error(record: logging.LogRecord) -> bool:
    """MLflow's SQL store logs each database error with its whole traceback before it raises it to us
    (a full disk: hundreds of lines per call); the error still reaches the caller, which says it once."""
    return not str(record.msg).startswith("SQLAlchemy database error")


logging.getLogger("mlflow.store.db.utils").addFilter(_not_mlflows_caught_error)

# Limits from mlflow.utils.validation (mlflow 2.16 - 3.x); a batch past them is rejected whole.
MAX_PARAM_VAL_LENGTH = 6000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

PARENT_RUN_TAG = "mlflow.parentRunId"
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
_WARNED: set[str] = set()  # experiments whose artifacts stay on one machine, warned about once


def default_tracking_uri(results_root: Path, create: bool = True) -> str:
    """`MLFLOW_TRACKING_URI` if set, else an embedded SQLite store at `<results_root>/mlflow.db`
    (the root is made unless `create` is False)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(results_root).resolve()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys, with every value a string MLflow accepts as a param.

    Lists and tuples become JSON, None becomes "null", an empty dict "{}"; values longer than
    MLflow's param limit (6000 characters) are truncated rather than rejected.
    """
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, prefix=f"{name}."))
            continue
        if isinstance(value, dict):
            text = "{}"
        elif isinstance(value, (list, tuple)):
            text = json.dumps(value, default=str)
        elif value is None:
            text = "null"
        else:
            text = str(value)
        out[name] = text[:MAX_PARAM_VAL_LENGTH]
    return out


def _duplicate_key(e: Exception) -> bool:
    """A database refused an insert because the row exists (PostgreSQL, SQLite, MySQL wordings)."""
    text = str(e)
    return any(w in text for w in ("duplicate key value", "UniqueViolation", "UNIQUE constraint failed",
                                   "Duplicate entry"))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _batches(metrics: list, params: list, tags: list):
    """Split entities into batches within MLflow's per-kind and total limits."""
    while metrics or params or tags:
        p, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        t, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        n = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:n], metrics[n:]
        yield m, p, t


class MlflowTracker:
    """Logs one invocation of a suite to MLflow.

    `start` opens the parent run, `start_child` a child per experiment; `end` closes a run with
    its status, and `close` marks every run still open as KILLED (Ctrl-C, crash).
    """

    def __init__(self, tracking_uri: str, artifact_root: Path, create: bool = True):
        """Checks the store first (harness.track.store): a missing SQLite store is created (unless
        `create` is False), a broken or silent one is a UserError before anything is logged.

        Artifacts: through a tracking server (http(s)://), a new experiment gets no location from the
        client, so the server's --artifacts-destination holds them (mlflow-artifacts:/, uploaded and read
        through the server by every machine); with a store file or database URI they go under
        `artifact_root` (the client's results root, file://), the only place such a client can write."""
        from harness.track.store import open_store

        open_store(tracking_uri, create=create)
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.via_server = tracking_uri.lower().startswith(("http://", "https://"))
        self.experiment_id = ""
        self.parent_run_id = ""
        self._open: list[str] = []  # in start order; close() ends children before the parent
        self.unclosed: list[str] = []  # runs close() could not end (the store cannot be written)
        self.close_error: Exception | None = None

    def start(self, suite: str, run_name: str, params: dict, tags: dict, at_ms: int | None = None) -> str:
        """Get or create the suite's experiment, open the parent run, log params and tags.

        `at_ms` (here and below): the time to record instead of now, when a journal is replayed."""
        from harness.run import interrupt

        self.experiment_id = self._experiment_id(suite, params.get("description"))
        with interrupt.deferred():  # a run created is a run close() knows of: a signal waits for the list
            run = self.client.create_run(self.experiment_id, start_time=at_ms or _now_ms(), run_name=run_name)
            self.parent_run_id = run.info.run_id
            self._open.append(self.parent_run_id)
        self.log_params(self.parent_run_id, params=params, tags=tags)
        return self.parent_run_id

    def start_child(self, name: str, params: dict, tags: dict, at_ms: int | None = None) -> str:
        """Open a child run of the parent in the same experiment; log its params and tags."""
        if not self.parent_run_id:
            raise RuntimeError("start_child() called before start()")
        from harness.run import interrupt

        with interrupt.deferred():  # as in start(): created and listed, or neither
            run = self.client.create_run(
                self.experiment_id,
                start_time=at_ms or _now_ms(),
                tags={PARENT_RUN_TAG: self.parent_run_id},
                run_name=name,
            )
            run_id = run.info.run_id
            self._open.append(run_id)
        self.log_params(run_id, params=params, tags=tags)
        return run_id

    def resume(self, suite: str, parent_run_id: str) -> str:
        """Continue an earlier invocation's parent run (`run --resume`): RUNNING again, no new run."""
        from harness.run import interrupt

        self.experiment_id = self._experiment_id(suite)
        self.parent_run_id = parent_run_id
        with interrupt.deferred():  # as in start(): RUNNING again and listed, or neither
            self.client.update_run(parent_run_id, status="RUNNING")
            self._open.append(parent_run_id)
        return parent_run_id

    def resume_child(self, run_id: str) -> str:
        """Continue a child run that an interrupted invocation left open or KILLED."""
        from harness.run import interrupt

        with interrupt.deferred():
            self.client.update_run(run_id, status="RUNNING")
            self._open.append(run_id)
        return run_id

    def knows_run(self, run_id: str) -> bool:
        """Whether this store holds the run (`run --resume` against another store is refused)."""
        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str) -> None:
        """Record the dataset as an MLflow input, identified by the digest of its decoded tensors."""
        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}))
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
        try:
            self.client.log_inputs(run_id, datasets=inputs)
        except MlflowException as e:
            # MLflow's store looks the experiment's dataset up, then inserts it: runs logging one new dataset at
            # once (shards on a server) can all miss it, and all but the first insert break its unique key. The
            # failed call changed nothing (its transaction rolled back); once more, it finds the dataset.
            if not _duplicate_key(e):
                raise
            self.client.log_inputs(run_id, datasets=inputs)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None,
                    at_ms: int | None = None) -> None:
        """Log metrics at one step (0 when None) in as few batches as MLflow allows.

        None values are skipped (a metric that was not measured); NaN and inf are logged as is.
        """
        ts = at_ms or _now_ms()
        entities = [
            Metric(key, float(value), ts, step or 0)
            for key, value in metrics.items()
            if value is not None
        ]
        for m, _, _ in _batches(entities, [], []):
            self.client.log_batch(run_id, metrics=m)

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        """Log files at the artifact root, and directories as a folder of the same name."""
        for path in map(Path, paths):
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))
            else:
                raise FileNotFoundError(f"artifact not found: {path}")

    def end(self, run_id: str, status: str, at_ms: int | None = None) -> None:
        """Close a run as FINISHED, FAILED or KILLED."""
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {', '.join(END_STATUSES)}, got {status!r}")
        self.client.set_terminated(run_id, status=status, end_time=at_ms or _now_ms())
        if run_id in self._open:
            self._open.remove(run_id)

    def close(self) -> None:
        """End every run this tracker opened and did not end as KILLED; safe to call twice.

        Used on Ctrl-C or a crash, so a failure here is logged, not raised over the original error.
        """
        for run_id in reversed(list(self._open)):
            try:
                self.end(run_id, "KILLED")
            except Exception as e:  # noqa: BLE001 - cleanup must reach every run; the caller says which failed
                log.debug("could not mark MLflow run %s as KILLED", run_id, exc_info=True)
                self.unclosed.append(run_id)
                self.close_error = e
                self._open.remove(run_id)

    def find_run(self, suite: str, name: str, parent_run_id: str | None = None):
        """The run named `name` in the suite's experiment (a child of `parent_run_id`, or a parent
        run when None), or None: how `harness sync` recognises runs it logged before."""
        exp = self.client.get_experiment_by_name(suite)
        if exp is None:
            return None
        # MLflow's filter grammar has no escape for a quote inside a string (a child named after
        # model_args such as lenet[act='relu'] is not found by name): children are looked up by their
        # parent tag and matched by name here; parents are named after run directories (no quotes).
        if parent_run_id:
            query = f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'"
        elif "'" not in name:
            query = f"attributes.run_name = '{name}'"
        else:
            query = ""
        token = None
        while True:
            page = self.client.search_runs([exp.experiment_id], query, max_results=1000, page_token=token)
            for run in page:
                if run.info.run_name == name and run.data.tags.get(PARENT_RUN_TAG) == parent_run_id:
                    return run
            token = page.token
            if not token:
                return None

    def adopt(self, suite: str, run_id: str, parent: bool) -> None:
        """Log into an existing run of the suite's experiment, as if this tracker had opened it."""
        if not self.experiment_id:  # looked up once, not for every run adopted
            self.experiment_id = self._experiment_id(suite)
        if parent:
            self.parent_run_id = run_id

    def _experiment_id(self, suite: str, description: str | None = None) -> str:
        """The suite's experiment, created (or marked, harness.track.experiments) when a run starts."""
        exp = self.client.get_experiment_by_name(suite)
        if exp is None:
            location = None  # a server: its --artifacts-destination (mlflow-artifacts:/), which every client reaches
            if not self.via_server:  # a store file or database: without a location, artifacts go to ./mlruns
                self.artifact_root.mkdir(parents=True, exist_ok=True)
                location = self.artifact_root.resolve().as_uri()
            try:
                return self.client.create_experiment(suite, artifact_location=location,
                                                     tags=experiments.experiment_tags(description))
            except MlflowException:
                # Another process created it between our lookup and create.
                exp = self.client.get_experiment_by_name(suite)
                if exp is None:
                    raise
        if self.via_server and exp.artifact_location.startswith("file:") and suite not in _WARNED:
            _WARNED.add(suite)  # made by an older harness, or through the database directly
            log.warning("MLflow experiment %r keeps its artifacts at %s, a folder on one machine, not on the "
                        "server %s: other machines cannot read them (a new experiment name gets the "
                        "server's artifact store)", suite, exp.artifact_location, self.tracking_uri)
        if exp.lifecycle_stage != "active":
            raise UserError(
                f"MLflow experiment {suite!r} (id {exp.experiment_id}) is deleted in "
                f"{self.tracking_uri}: restore it with `MLFLOW_TRACKING_URI={self.tracking_uri} "
                f"mlflow experiments restore --experiment-id {exp.experiment_id}`, "
                f"or purge it with `mlflow gc --backend-store-uri {self.tracking_uri}`"
            )
        if description is not None:  # a run starts in it (not a resume or an adopted run)
            experiments.mark(self.client, exp, description)
        return exp.experiment_id

    def log_params(self, run_id: str, params: dict, tags: dict) -> None:
        """Params and tags, flattened (see `flatten`); the same value logged again is a no-op."""
        p = [Param(k, v) for k, v in flatten(params).items()]
        t = [RunTag(k, v) for k, v in flatten(tags).items()]
        for _, pb, tb in _batches([], p, t):
            self.client.log_batch(run_id, params=pb, tags=tb)
