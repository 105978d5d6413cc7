"""`python -m harness reproduce RUN`: run a recorded run again and say whether it reproduced.

    python -m harness reproduce results/smoke/20261202T114418Z-6c8173 [--only lenet] [--epochs 1]
    python -m harness reproduce <MLflow run id> --tracking-uri sqlite:///results/mlflow.db

RUN is a run directory, or the MLflow id of a run `run` logged (its parent run, or a child of it):
its run directory when it is on this machine, else the suite.yaml, env.json, results and steps.csv
it logged as artifacts. What the run recorded decides what runs again: its resolved suite.yaml (every
seed, determinism mode, data limit; a valid suite, harness.suite.loader), the experiments its results
hold (its shard, its -k), and its device class. The run goes through the runner as `run` does, into a
new run directory whose env.json (`reproduces`) and MLflow parent run (`harness.reproduces*` tags)
name the run it repeats; harness.views.verdict then judges each experiment.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.errors import UserError
from harness.core.registry import unknown_name_message


@dataclass
class Recorded:
    """What a run recorded, read from its run directory (or its MLflow artifacts)."""

    path: Path  # the run directory, or the folder its MLflow artifacts were downloaded into
    origin: Path  # the run directory (where the run wrote it: maybe on another machine)
    given: str  # RUN as the user gave it
    run_id: str  # <UTC time>-<id>
    mlflow_run_id: str  # the parent run ("" without tracking)
    env: dict
    state: dict
    results: object  # DataFrame (harness.run.results)
    steps: object  # steps.csv as a DataFrame, or None


def locate(run: str, tracking_uri: str | None, scratch: Path) -> Recorded:
    """RUN -> what it recorded; every problem a UserError naming RUN (exit 2, nothing created)."""
    import os

    path = Path(run)
    mlflow_id, origin = "", path
    if path.exists() and not path.is_dir():
        raise UserError(f"{run}: is a file, not a run directory; give a run directory "
                        f"(results/<suite>/<UTC time>-<id>) or an MLflow run id with --tracking-uri")
    if not path.exists():
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise UserError(f"{run}: no such run directory; give a run directory (results/<suite>/<UTC time>-<id>), "
                            f"or an MLflow run id with --tracking-uri URI (the store it was logged in)")
        from harness.track.recorded import run_dir_of

        path, mlflow_id, origin = run_dir_of(uri, run, scratch)
    missing = [n for n in ("suite.yaml", "env.json") if not (path / n).is_file()]
    if missing or not any((path / n).is_file() for n in ("results.parquet", "results.csv")):
        raise UserError(f"{run}: not a run directory (no {', '.join(missing) or 'results.parquet'}); give the "
                        f"directory a run printed, e.g. results/smoke/<UTC time>-<id>")
    from harness.run import runfiles

    df = runfiles.read_results(path)  # every file it recorded validated: a damaged one is exit 2, named
    if not len(df):
        raise UserError(f"{run}: the run recorded no finished row (it stopped before its first); nothing to reproduce")
    env = runfiles.read_env(path / "env.json")
    state = runfiles.read_state(path / "state.json") if (path / "state.json").exists() else {}
    parent = str(state.get("parent_run_id") or "")
    return Recorded(path, Path(origin).resolve() if origin == path else origin, run,
                    state.get("run_id") or str(df["run_id"].iloc[0]),
                    mlflow_id or ("" if parent.startswith("offline:") else parent), env, state, df, _steps(path))


def _steps(path: Path):
    """steps.csv, the per-epoch values exactly as written (compared bit for bit), or None without one."""
    from harness.run.runfiles import read_steps

    file = path / "steps.csv"
    return read_steps(file) if file.exists() else None


def plan(rec: Recorded, only: str | None, epochs: int | None):
    """(the recorded suite cut to the experiments the run ran (its shard, its -k), --only and --epochs;
    the ids of the experiments of its shard it recorded no row of: it did not finish, or --fail-fast)."""
    from harness.suite import load_suite
    from harness.suite.shard import parse_shard

    suite = load_suite(rec.path / "suite.yaml")  # a run's suite.yaml is a valid suite
    ran = set(rec.results["experiment"].dropna())
    shard = rec.state.get("shard") or rec.env.get("shard") or "0/1"
    try:
        mine = parse_shard(str(shard), {}).select(suite.experiments)
    except UserError:  # a damaged record: judge what the results hold
        mine = suite.experiments
    not_run = [e.id for e in mine if e.id not in ran]
    experiments = [e for e in suite.experiments if e.id in ran]
    if not experiments:
        raise UserError(f"{rec.given}: its results name no experiment of its suite.yaml "
                        f"({', '.join(sorted(ran))}); the run directory is damaged")
    if only is not None:
        ids = [e.id for e in experiments]
        if only not in ids:
            raise UserError(f"--only {only}: {unknown_name_message('experiment', only, ids)}")
        experiments = [e for e in experiments if e.id == only]
    if epochs is not None:
        trained = [e for e in experiments if e.spec.kind == "train"]
        if not trained:
            raise UserError(f"--epochs {epochs}: no training experiment to shorten "
                            f"({', '.join(e.id for e in experiments)} time kernels)")
        most = min(e.spec.epochs for e in trained)
        if not 1 <= epochs <= most:
            raise UserError(f"--epochs {epochs}: give 1 to {most}, the epochs the run recorded"
                            + (" (the fewest of its experiments)" if len(trained) > 1 else ""))
        experiments = [replace(e, spec=e.spec.model_copy(update={"epochs": epochs}))
                       if e.spec.kind == "train" else e for e in experiments]
    return replace(suite, experiments=experiments), not_run


def incomplete(rec: Recorded, not_run: list[str], only: str | None) -> tuple[str | None, bool]:
    """(what to say when the recorded run did not finish or has experiments without a row, else None;
    whether that fails the reproduction: yes, unless --only restricted it to an experiment it recorded)."""
    gaps = _merge_gaps(rec.path)
    unfinished = rec.state.get("finished") is False or bool(gaps)
    if not unfinished and not not_run:
        return None, False
    total = len(rec.results["experiment"].dropna().unique()) + len(not_run)
    why = (f"the recorded run is a merge of shards, {gaps} (its merge.json)" if gaps else
           "the recorded run did not finish (its state.json says finished: false)" if unfinished else
           "the recorded run has no row of some of its experiments" + (
               " (it stopped at its first failure: --fail-fast)" if "--fail-fast" in rec.env.get("argv", []) else ""))
    what = (f"{len(not_run)} of its {total} experiment(s) never ran there and are not judged: {', '.join(not_run)}"
            if not_run else "though it holds a row of every experiment")
    if only is not None:
        return f"{why}: {what}; --only {only} restricts this reproduction to an experiment it recorded", False
    return (f"{why}: {what}; the reproduction fails (exit 1) unless --only EXPERIMENT restricts it to what "
            f"the run recorded"), True


def _merge_gaps(path: Path) -> str:
    """A merged run's missing and unfinished shards (merge.json, harness.scale.merge), e.g.
    "1/2 missing"; "" for a run that is no merge, or a merge of every shard, each finished."""
    from harness.core import jsonfile

    file = path / "merge.json"
    if not file.exists():
        return ""
    jsonfile.check_file(file, 16 << 20, "a merge.json")  # read before anything runs: damaged is exit 2, named
    merged = jsonfile.read_json(file, what="a merge.json", max_bytes=16 << 20, max_depth=8)
    if not isinstance(merged, dict):
        raise UserError(f"{file}: not a merge.json (a JSON {type(merged).__name__}, not an object)")
    runs = merged.get("runs") if isinstance(merged.get("runs"), dict) else {}
    missing = [str(s) for s in merged["missing"]] if isinstance(merged.get("missing"), list) else []
    unfinished = [str(s) for s, r in runs.items() if isinstance(r, dict) and r.get("finished") is False]
    said = [f"{', '.join(names)} {what}" for names, what in ((missing, "missing"), (unfinished, "unfinished")) if names]
    return "; ".join(said)


def checkout_warnings(rec: Recorded) -> list[str]:
    """The current checkout against the run's commit: another commit, or uncommitted changes."""
    import harness
    from harness.core.envinfo import git_info

    now = git_info(Path(harness.__file__).resolve().parent)
    was, here = rec.env.get("git_commit"), now.get("git_commit")
    out = []
    if was and here and was != here:
        out.append(f"the run was made at commit {was[:12]}, this checkout is at {here[:12]}: a difference may come "
                   f"from the code (git checkout {was[:12]} to reproduce it exactly)")
    elif not was:
        out.append("the run recorded no commit (made outside git): the code may differ")
    if rec.env.get("git_dirty"):
        out.append("the run was made with uncommitted changes: its code is not in any commit")
    if now.get("git_dirty"):
        out.append("this checkout has uncommitted changes")
    return out


def world_warnings(rec: Recorded, given: str) -> list[str]:
    """The run's data-parallel processes against this command's: another world size sums the
    gradients in another order (docs/scaling.md: equal within tolerance, not bitwise)."""
    from harness.core import distributed

    sizes = rec.results["world_size"].dropna() if "world_size" in rec.results else []
    was, now = (int(sizes.max()) if len(sizes) else 1), distributed.world().size
    if was == now:
        return []
    how = (f"torchrun --standalone --nproc_per_node={was} -m harness reproduce {given}" if was > 1 else
           f"python -m harness reproduce {given}")
    return [f"the run was made by {was} data-parallel process(es), this reproduce runs {now}: expect it equal "
            f"within tolerance, not bitwise (to repeat it exactly: {how}; several nodes: srun torchrun)"]


def prepare(rec: Recorded, suite, *, device: str | None, out: Path, tracking: bool, tracking_uri: str | None,
            data_dir: str | None):
    """Every check `run` makes before it creates anything (results root, device, data, the store);
    returns (the device, the tracker). The device defaults to the class the run recorded."""
    from harness.core.determinism import prepare_process
    from harness.run import rundir, runner

    rundir.check_out_root(out)
    prepare_process()  # before CUDA starts
    recorded_device = str(rec.env.get("device") or "cpu").split(":")[0]
    try:
        resolved = runner.resolve_device(device or recorded_device)
    except UserError:
        if device:
            raise
        raise UserError(f"{rec.given}: the run was made on {recorded_device}, and this machine has no CUDA device; "
                        f"give --device cpu to run it here (expect it to differ), or reproduce it on a GPU") from None
    from harness.core import distributed

    here = distributed.world()
    if here.size > 1:  # under torchrun: what `run` refuses there (kernels, a batch that does not split), exit 2
        from harness.train.ddp import check_world

        check_world(suite, resolved, download=False)
    if any(e.spec.kind == "train" for e in suite.experiments):
        from harness.train.datacheck import check_data

        check_data(suite.experiments, data_dir)
    from harness.track import make_tracker

    return resolved, make_tracker(tracking and here.writer, tracking_uri, out)  # rank 0 alone tracks


def rerun(rec: Recorded, suite, *, device: str, tracker, out: Path, data_dir: str | None, argv: list[str]):
    """Run `suite` through the runner, as `run` does, into a new run directory that names the run it
    reproduces (env.json `reproduces`, the parent run's `harness.reproduces*` tags)."""
    from harness.run import runner

    reproduces = {"run_id": rec.run_id, "run_dir": str(rec.origin), "mlflow_run_id": rec.mlflow_run_id}
    return runner.run_suite(suite, device=device, out_root=out, tracker=tracker, argv=argv, data_dir=data_dir,
                            reproduces={k: v for k, v in reproduces.items() if v})


def judge_rerun(rec: Recorded, run_dir: Path):
    """The verdicts of the new run `run_dir` against the recorded one (harness.views.verdict)."""
    from harness.run import results, runfiles
    from harness.views import verdict

    new = results.load(run_dir)
    new_env = runfiles.read_env(run_dir / "env.json")
    return verdict.judge(rec.results, new, rec.steps, _steps(run_dir), rec.env, new_env)
