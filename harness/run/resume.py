"""`run --resume DIR`: what the run was made under, and a resume under anything else refused.

A resumed run's finished rows, and its interrupted training's checkpoint, were computed under the
settings of the first invocation; continuing under others would give a row that describes a run that
never happened. So `--resume` is refused (exit 2, before the store or any file is touched) when any
of these differs from what the run directory recorded (env.json), naming each and the command that
matches:

- the device (cpu / cuda) and its model (the GPU, or on CPU the processor): `--device`, another machine;
- the world size (torchrun's processes in all): `torchrun --nproc_per_node=N`, or a plain `python`;
- on CPU, torch's threads (`OMP_NUM_THREADS=N`): the reductions of a CPU run depend on them (a CUDA
  run's numbers do not, its data and kernels are on the GPU);
- the code: the git commit and the torch version;
- the data a checkpoint was trained on (its digest, recorded in the checkpoint): `--data-dir`.

Each is refused rather than recorded: none of them can be changed mid-run and still give a row that
`reproduce` could repeat. A setting an older run directory did not record is not checked.
"""
from __future__ import annotations

from pathlib import Path

from harness.core.errors import UserError


def recorded(path: Path) -> dict:
    """The settings a run directory's env.json recorded (those it has): device, device_name,
    world_size, threads, git_commit, torch."""
    from harness.run.runfiles import read_env

    file = Path(path) / "env.json"
    if not file.exists():
        return {}
    env = read_env(file)  # validated: a damaged one is exit 2 naming it, before anything runs
    device = str(env.get("device") or "").split(":")[0]
    out = {"device": device or None, "world_size": env.get("world_size"), "threads": env.get("torch_threads"),
           "git_commit": env.get("git_commit"), "torch": env.get("torch"),
           "device_name": env.get("gpu_name") if device == "cuda" else env.get("cpu_model")}
    return {k: v for k, v in out.items() if v not in (None, "")}


def current(device: str, world_size: int) -> dict:
    """The same settings in this process (`device`: the resolved one)."""
    import harness
    import torch

    from harness.core import envinfo

    kind = device.split(":")[0]
    name = envinfo.device_name(device)  # what env.json records: the GPU's name, or the CPU model
    return {"device": kind, "world_size": world_size, "threads": torch.get_num_threads(),
            "git_commit": envinfo.git_info(Path(harness.__file__).resolve().parent).get("git_commit"),
            "torch": torch.__version__, "device_name": name}


LABELS = {"device": "device", "device_name": "device model", "world_size": "world size", "threads": "CPU threads",
          "git_commit": "git commit", "torch": "torch"}


def differences(before: dict, now: dict) -> dict[str, tuple]:
    """{setting: (recorded, now)} for every recorded setting that differs now (CPU threads only on CPU)."""
    diff = {k: (v, now.get(k)) for k, v in before.items() if now.get(k) not in (None, "") and now.get(k) != v}
    if before.get("device") != "cpu" or now.get("device") != "cpu":
        diff.pop("threads", None)
    if "device" in diff:
        diff.pop("device_name", None)  # another kind of device: its model says nothing more
    return diff


def check(path: Path, device: str, world_size: int, command) -> None:
    """Refuse `--resume path` under other settings than it was made under. `command(device=, threads=,
    nproc=)` is the resume command line with those settings (the CLI's)."""
    diff = differences(recorded(path), current(device, world_size))
    if not diff:
        return
    what = ", ".join(f"{LABELS[k]} {_short(k, a)} (now {_short(k, b)})" for k, (a, b) in diff.items())
    fix = command(device=diff["device"][0] if "device" in diff else None,
                  threads=diff["threads"][0] if "threads" in diff else None,
                  nproc=diff["world_size"][0] if "world_size" in diff else None)
    elsewhere = [f"{LABELS[k]} {_short(k, a)}" for k, (a, _) in diff.items()
                 if k in ("device_name", "git_commit", "torch")]
    where = f" on a machine and checkout with {', '.join(elsewhere)}" if elsewhere else ""
    raise UserError(f"--resume {path}: that run was made under other settings: {what}; resume it as it was "
                    f"made{where}: {fix} (or start a new run)")


def check_shard(run_dir: Path, index: int, launch_dir: Path, threads: str | None) -> None:
    """`launch --resume`: refuse, before anything is submitted, to continue a shard's run under
    another commit or torch than it was made with, or other CPU threads on CPU: `threads`, the
    OMP_NUM_THREADS the local launcher will give it (its shards are this process's children). Another
    launcher's shards (`threads` None) get their threads and device from the scheduler: their own
    `run --resume` checks those."""
    import harness
    import torch

    from harness.core import envinfo

    before = recorded(run_dir)
    now = {"device": before.get("device"), "torch": torch.__version__,
           "git_commit": envinfo.git_info(Path(harness.__file__).resolve().parent).get("git_commit")}
    if threads is not None:  # what torch takes from OMP_NUM_THREADS; anything else, torch itself says
        now["threads"] = int(threads) if threads.strip().isascii() and threads.strip().isdigit() \
            else torch.get_num_threads()
    diff = differences({k: v for k, v in before.items() if k in now}, now)
    if not diff:
        return
    what = ", ".join(f"{LABELS[k]} {_short(k, a)} (now {_short(k, b)})" for k, (a, b) in diff.items())
    code = [f"{LABELS[k]} {_short(k, a)}" for k, (a, _) in diff.items() if k != "threads"]
    where = f" from a checkout with {', '.join(code)}" if code else ""
    prefix = f"OMP_NUM_THREADS={diff['threads'][0]} " if "threads" in diff else ""
    raise UserError(f"launch --resume {launch_dir}: shard {index} ({run_dir}) was made under other settings: {what}; "
                    f"resume it as it was made{where}: {prefix}python -m harness launch --resume {launch_dir} "
                    f"(or start a new launch)")


def _short(key: str, value) -> str:
    return str(value)[:12] if key == "git_commit" else str(value)


def check_data(path: Path, experiments, data_dir, download: bool, device: str) -> None:
    """Refuse `--resume path` when an interrupted training's checkpoint was made on other data than
    the data it would continue on (the digest a checkpoint records; older checkpoints have none)."""
    from harness.run import results
    from harness.run.rundir import FINISHED, checkpoint_path
    from harness.train import checkpoint, loop

    path = Path(path)
    done = set()
    if any((path / name).is_file() for name in ("results.parquet", "results.csv")):
        df = results.load(path)
        done = set(df.loc[df["status"].isin(FINISHED), "experiment"])
    for exp in experiments:
        if exp.spec.kind != "train" or exp.id in done:  # a finished one's kept checkpoint is not continued
            continue
        directory = checkpoint_path(path, exp.id)
        state = checkpoint.load(directory) if (directory / checkpoint.LAST).is_file() else None
        made_on = (state or {}).get("data_digest")
        if not made_on:
            continue
        import torch

        data = loop.load_data(exp.spec, torch.device(device), data_dir, download)  # cached for the run itself
        if data.digest != made_on:
            raise UserError(f"--resume {path}: the checkpoint of {exp.id} ({directory / checkpoint.LAST}) was "
                            f"trained on other data (digest {made_on}; {data.source} is {data.digest}); resume "
                            f"with the --data-dir it was made with, or start a new run")
