"""Checkpoints after every epoch, written atomically and read back with weights_only=True.

A checkpoint holds everything a resumed run needs to end bitwise-equal to an uninterrupted one:
model and optimiser state, completed epochs, the per-epoch history, and every RNG state (Python,
NumPy, torch CPU and CUDA: dropout draws from them). Batch order needs no state: each epoch's
permutation is derived from (seed, epoch). It also records the digest of the data it was trained on, which
`run --resume` checks (harness.run.resume). Only plain containers, numbers, strings and tensors
are stored, so the file loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from harness.core.errors import UserError
from harness.core.io import atomic_write

LAST = "last.pt"
_KEYS = ("model", "optimizer", "epoch", "history", "spec_hash", "elapsed_s", "rng")


def save(directory: Path, *, model, optimizer, epoch: int, history: list[dict], spec_hash: str,
         elapsed_s: float, batches: list[tuple[int, float, float]] = (),
         epoch_fingerprints: list[str | None] = (), data_digest: str = "") -> Path:
    """`batches`: the sampled per-batch losses so far, (global batch, fractional epoch, loss), so that
    a resumed run's steps and plots hold them too; `epoch_fingerprints`: the fingerprint after each
    epoch so far (None where unknown), so that a resumed run's row holds every epoch's (both optional:
    older checkpoints have none). `data_digest`: the digest of the data it was trained on, which
    `--resume` checks (run/resume.py)."""
    state = {
        "data_digest": data_digest,
        "batches": [list(b) for b in batches],
        "epoch_fingerprints": list(epoch_fingerprints),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,  # epochs completed
        "history": history,
        "spec_hash": spec_hash,
        "elapsed_s": elapsed_s,
        "rng": _rng_state(),
    }
    path = Path(directory) / LAST
    atomic_write(path, lambda p: torch.save(state, p))
    return path


def load(directory: Path) -> dict | None:
    """The checkpoint in `directory`, or None when there is none. One that cannot be read (truncated,
    garbage, not a checkpoint of this harness) is a UserError naming the file and what to do."""
    path = Path(directory) / LAST
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds here: RuntimeError, UnpicklingError, EOFError, ...
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load this checkpoint ({type(e).__name__}: {why[:200]}); "
                        f"delete it to restart that experiment from scratch, or start a new run") from e
    missing = [k for k in _KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path}: not a checkpoint of this harness (no {', '.join(missing)}); "
                        f"delete it to restart that experiment from scratch, or start a new run")
    return state


def restore(state: dict, *, model, optimizer) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(rng: dict) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
