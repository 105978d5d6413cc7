"""Did a run reproduce? One verdict per experiment, from the recorded run's files and the new run's.

- training: `bitwise identical` only when the fingerprints (sha256 over the weights and the
  per-epoch loss/accuracy trace, harness.core.determinism) are equal; else `equal within tolerance`
  when every per-epoch loss and accuracy (train and validation) is within TOLERANCE_REL of the
  recorded one (accuracies are counts over the same images: this asks for the same counts), bit-equal
  numbers with other weights included; else `different`. Reproducing the first N of E epochs
  (`reproduce --epochs N`) compares the recorded fingerprint after epoch N (results column
  `epoch_fingerprints`) and the epoch 1-N numbers (steps.csv); a run recorded before that column
  gets no weight comparison, so no bitwise verdict.
- learn_kernel: the learned kernel and its final loss, the same way.
- kernel timings are measurements, not bitwise results: their verdict says whether every row ran
  as before and how the median times moved (`report` compares timings against their spread).

Every verdict says what it compared (`compared:` lines) and lists every recorded difference, whatever
the verdict: the rows' settings (seed, determinism mode, data digest, device, threads, commit, ...) and
env.json's (torch, CUDA, cuDNN, CPU and GPU model, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

TOLERANCE_REL = 1e-6
TRACE = ("train_loss", "train_acc", "val_loss", "val_acc")
ROW_FIELDS = {"seed": "seed", "determinism": "determinism mode", "dataset_digest": "data digest",
              "device": "device", "device_name": "device model", "threads": "CPU threads",
              "world_size": "processes (world size)", "git_commit": "commit", "git_dirty": "uncommitted changes",
              "epochs": "epochs", "batch_size": "batch size", "lr": "lr", "resize": "input size",
              "precision": "precision", "dtype": "dtype", "model": "model", "config": "model_args/config",
              "code_hash": "kernel code"}
ENV_FIELDS = {"torch": "torch", "cuda": "CUDA", "cudnn": "cuDNN", "gpu_name": "GPU", "gpu_driver": "GPU driver",
              "cpu_model": "CPU", "torch_threads": "torch threads", "python": "Python", "numpy": "NumPy",
              "harness_version": "harness version"}
IDENTICAL, TOLERANT, DIFFERENT = "bitwise identical", "equal within tolerance", "different"


@dataclass
class Verdict:
    experiment: str
    mode: str  # strict | fast
    verdict: str  # IDENTICAL | TOLERANT | DIFFERENT | "not comparable" | "timings" | "<status> as recorded"
    detail: str
    compared: list[str] = field(default_factory=list)  # what was compared, one line each ("weights: ...")
    causes: list[str] = field(default_factory=list)  # every recorded difference, whatever the verdict
    counted: bool = True  # held to the exit code: a strict training or learn_kernel experiment
    reproduced: bool = False  # bitwise (or its epoch-N equivalent), and every row ran

    @property
    def ok(self) -> bool:
        return self.reproduced or not self.counted


def judge(old, new, old_steps, new_steps, old_env: dict, new_env: dict) -> list[Verdict]:
    """A verdict for each experiment of the new run (`old`/`new`: results frames; `*_steps`: steps.csv
    frames or None; `*_env`: env.json)."""
    out = []
    for exp in dict.fromkeys(new["experiment"]):
        o = old[old["experiment"] == exp].to_dict("records")
        n = new[new["experiment"] == exp].to_dict("records")
        if not o:
            out.append(Verdict(exp, n[0]["determinism"], DIFFERENT, "the recorded run has no row of it", counted=False))
            continue
        kind = n[0]["kind"]
        v = (_train(exp, o[0], n[0], _trace(old_steps, exp), _trace(new_steps, exp)) if kind == "train"
             else _learned(exp, o[0], n[0]) if kind == "learn_kernel" else _timings(exp, o, n))
        # every recorded difference, whatever the verdict (`--epochs N` is none: compared at epoch N)
        v.causes = [c for c in causes(o[0], n[0], old_env, new_env)
                    if not (kind == "train" and c.startswith("epochs: ") and n[0]["epochs"] < o[0]["epochs"])]
        out.append(v)
    return out


def _failed(exp: str, o: dict, n: dict) -> Verdict | None:
    """A row that did not end ok on either side: failed or diverged as recorded (the same status), or
    different (another status); None when both are ok."""
    if o["status"] == n["status"] == "ok":
        return None
    now = f" ({n['error']})" if _has(n.get("error")) else ""
    if o["status"] != n["status"]:
        return Verdict(exp, n["determinism"], DIFFERENT, f"recorded {o['status']}, now {n['status']}{now}",
                       ["status: the row's status and error"])
    same = str(o.get("error")) == str(n.get("error"))
    detail = (f"{n['status']} again{now}; " + ("the same error as recorded" if same else
                                                 f"recorded: {o.get('error') if _has(o.get('error')) else '?'}"))
    compared = ["status: the row's status and error"]
    if n["status"] == "diverged" and n.get("kind") == "train":  # a diverged training still has its weights
        compared.append("weights: the fingerprint at the divergence")
        detail += ("; the weights bitwise identical" if _has(o.get("fingerprint")) and o.get("fingerprint") ==
                   n.get("fingerprint") else f"; fingerprint {o.get('fingerprint')} -> {n.get('fingerprint')}")
    return Verdict(exp, n["determinism"], f"{n['status']} as recorded", detail, compared)


def _train(exp: str, o: dict, n: dict, old_trace: dict, new_trace: dict) -> Verdict:
    mode = n["determinism"]
    strict = mode == "strict"
    bad = _failed(exp, o, n)
    if bad is not None:
        bad.counted = strict
        return bad
    epochs, recorded = int(n["epochs"]), int(o["epochs"])
    short = epochs < recorded  # `reproduce --epochs N`: compared after epoch N of the recorded run
    at = f"after epoch {epochs}" + (f" of the recorded {recorded}" if short else "")
    prints = _epoch_prints(o)
    was = o.get("fingerprint") if not short else prints[epochs - 1] if len(prints) >= epochs else None
    now = n.get("fingerprint")
    why = ("it was made before per-epoch fingerprints were recorded, or resumed from an older checkpoint; "
           "reproduce it without --epochs to compare its final weights" if short else "its row has none")
    compared = [f"weights: the fingerprint {at} (the weights and every epoch's loss and accuracy)" if _has(was) else
                f"weights: not compared (the run recorded no fingerprint {at}: {why})"]
    numbers = f"every loss and accuracy of epoch{f's 1-{epochs}' if epochs > 1 else ' 1'} (steps.csv)"
    pairs = [(e, k, old_trace.get(e, {}).get(k), new_trace.get(e, {}).get(k)) for e in range(1, epochs + 1) for k in TRACE]
    if short:
        pairs = [] if any(a is None for _, _, a, _ in pairs) else pairs
    elif any(a is None for _, _, a, _ in pairs):  # no (whole) steps.csv: what it has, else the row's final numbers
        pairs = [p for p in pairs if p[2] is not None]
        numbers = (f"the losses and accuracies steps.csv holds, of epoch(s) {', '.join(map(str, sorted({p[0] for p in pairs})))}"
                   if pairs else "the final losses and accuracies (results; the run has no steps.csv)")
        pairs = pairs or [(recorded, k, o.get(k), n.get(k)) for k in TRACE]
    compared.append(f"numbers: {numbers}" if pairs else f"numbers: not compared (the run recorded no per-epoch "
                                                        f"metrics for epochs 1-{epochs} in steps.csv)")
    if _has(was) and was == now:
        return Verdict(exp, mode, IDENTICAL, f"fingerprint {now}" + (f" {at}" if short else ""), compared,
                       counted=strict, reproduced=True)
    weights = (f"the weights differ (fingerprint {at}: {was} -> {now}{_first_difference(o, n, epochs)})"
               if _has(was) else "the weights were not compared")
    if not pairs:
        return Verdict(exp, mode, "not comparable", weights, compared, counted=strict)
    worst = max(pairs, key=lambda p: _rel(p[2], p[3]))
    where = f"{worst[1]} at epoch {worst[0]}: {worst[2]!r} -> {worst[3]!r}"
    if _rel(worst[2], worst[3]) == 0:
        return Verdict(exp, mode, TOLERANT, f"every loss and accuracy compared is equal bit for bit, but {weights}",
                       compared, counted=strict)
    if _rel(worst[2], worst[3]) <= TOLERANCE_REL:
        return Verdict(exp, mode, TOLERANT, f"every loss and accuracy within {TOLERANCE_REL:g} relative "
                       f"(largest: {where}); {weights}", compared, counted=strict)
    acc = ((old_trace[epochs].get("val_acc"), new_trace.get(epochs, {}).get("val_acc")) if short
           else (o.get("val_acc"), n.get("val_acc")))
    return Verdict(exp, mode, DIFFERENT, f"val_acc {_f(acc[0])} -> {_f(acc[1])}"
                   f"{f' at epoch {epochs}' if short else ''}; largest "
                   f"difference {_rel(worst[2], worst[3]):.1e} relative ({where}); {weights}", compared,
                   counted=strict)


def _epoch_prints(row: dict) -> list:
    """The row's fingerprint after each epoch (results column `epoch_fingerprints`); [] in rows
    recorded before it (or a damaged cell)."""
    import json

    text = row.get("epoch_fingerprints")
    if not _has(text):
        return []
    try:
        prints = json.loads(text)
    except (TypeError, ValueError):
        return []
    return prints if isinstance(prints, list) else []


def _first_difference(o: dict, n: dict, epochs: int) -> str:
    """Where the weights first differ, when both rows recorded every epoch's fingerprint."""
    a, b = _epoch_prints(o), _epoch_prints(n)
    if len(a) < epochs or len(b) < epochs or any(not isinstance(x, str) for x in a[:epochs] + b[:epochs]):
        return ""
    first = next((e for e in range(epochs) if a[e] != b[e]), None)
    return "" if first is None or epochs == 1 else f"; they first differ after epoch {first + 1}"


def _learned(exp: str, o: dict, n: dict) -> Verdict:
    mode, bad = n["determinism"], _failed(exp, o, n)
    if bad is not None:
        bad.counted = mode == "strict"
        return bad
    compared = ["the learned kernel (its weights as recorded, JSON) and the final loss"]
    same = o.get("learned_kernel") == n.get("learned_kernel") and o.get("loss_final") == n.get("loss_final")
    if same:
        return Verdict(exp, mode, IDENTICAL, f"learned kernel and final loss {n.get('loss_final')!r}", compared,
                       counted=mode == "strict", reproduced=True)
    rel = _rel(o.get("loss_final"), n.get("loss_final"))
    verdict = TOLERANT if rel <= TOLERANCE_REL else DIFFERENT
    return Verdict(exp, mode, verdict, f"final loss {o.get('loss_final')!r} -> {n.get('loss_final')!r} "
                   f"({rel:.1e} relative; tolerance {TOLERANCE_REL:g}); learned kernel "
                   f"{'equal' if o.get('learned_kernel') == n.get('learned_kernel') else 'differs'}", compared,
                   counted=mode == "strict")


def _timings(exp: str, o: list[dict], n: list[dict]) -> Verdict:
    """Each row's status, and the median times of the rows timed both times."""
    before = {(r["variant"], r["size"]): r for r in o}
    pairs = [(before[(r["variant"], r["size"])], r) for r in n if (r["variant"], r["size"]) in before]
    unrecorded = [f"{r['variant']} {r['size']}" for r in n if (r["variant"], r["size"]) not in before]
    changed = [f"{a['variant']} {a['size']}: {a['status']} -> {b['status']}" for a, b in pairs if a["status"] != b["status"]]
    again = {}  # status -> rows that ended so both times (not ok)
    for a, b in pairs:
        if a["status"] == b["status"] != "ok":
            again.setdefault(b["status"], []).append(b)
    ratios = sorted(b["time_median_s"] / a["time_median_s"] for a, b in pairs
                    if _has(b.get("time_median_s")) and _has(a.get("time_median_s")))
    parts = changed + [f"{len(rows)} of {len(n)} row(s) {status} again ({_rows_named(rows)})" for status, rows in again.items()]
    parts.append(f"median time {ratios[len(ratios) // 2] - 1:+.0%} (median over {len(ratios)} rows; timings are "
                 f"measurements, not bitwise results: `report` compares them against their spread)" if ratios
                 else "no row was timed both times")
    if unrecorded:
        parts.append(f"{len(unrecorded)} row(s) the recorded run has not ({', '.join(unrecorded)}): not compared")
    elif not changed and not again:
        parts.insert(0, "every row ran as recorded")
    failed = [r for r in n if r["status"] == "failed"]
    compared = [f"statuses of {len(pairs)} row(s) (ok, failed, capped) and the errors of those that did not end ok",
                f"timings: the median times of {len(ratios)} row(s) timed both times (measurements, not bitwise "
                f"results: never held to the exit code)" if ratios else "timings: none (no row was timed both times)"]
    verdict = DIFFERENT if changed else "failed as recorded" if failed else "timings"
    return Verdict(exp, n[0]["determinism"], verdict, "; ".join(parts), compared,
                   counted=bool(failed), reproduced=not failed)


def _rows_named(rows: list[dict]) -> str:
    first = rows[0].get("error")
    return ", ".join(f"{r['variant']} {r['size']}" for r in rows) + (f"; first error: {first}" if _has(first) else "")


def causes(o: dict, n: dict, old_env: dict, new_env: dict) -> list[str]:
    """The recorded settings that differ between the two runs, `what: old -> new` (and fast mode's note)."""
    out = [f"{label}: {_short(o.get(k))} -> {_short(n.get(k))}" for k, label in ROW_FIELDS.items()
           if _has(o.get(k)) and str(o.get(k)) != str(n.get(k))]
    out += [f"{label}: {_short(old_env.get(k))} -> {_short(new_env.get(k))}" for k, label in ENV_FIELDS.items()
            if k in old_env and str(old_env.get(k)) != str(new_env.get(k))]
    if n.get("determinism") == "fast":
        out.append("fast mode: nondeterministic kernels (cuDNN autotuning, TF32, compile) are allowed")
    return out


def _trace(steps, exp: str) -> dict[int, dict[str, float]]:
    """{epoch: {metric: value}} of one experiment's per-epoch losses and accuracies (steps.csv)."""
    if steps is None or not len(steps):
        return {}
    s = steps[(steps["experiment"] == exp) & steps["metric"].isin(TRACE)]
    out: dict[int, dict[str, float]] = {}
    for r in s.itertuples():
        out.setdefault(int(r.step), {})[r.metric] = float(r.value)
    return out


def _rel(a, b) -> float:
    if a is None or b is None:
        return float("inf")
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-12) if a == a and b == b else float("inf")


def _has(x) -> bool:
    """Not None, NaN or pandas' NA (an empty cell)."""
    import pandas as pd

    return not (x is None or (pd.api.types.is_scalar(x) and pd.isna(x)))


def _short(x) -> str:
    text = "unknown" if not _has(x) else str(x)
    return text[:12] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def _f(x) -> str:
    return f"{x:.4f}" if _has(x) else "?"


def exit_code(verdicts: list[Verdict], rerun_failed: bool) -> int:
    """0 when every strict-mode experiment reproduced bitwise (and the rerun had no failed row), else 1."""
    return 0 if all(v.ok for v in verdicts) and not rerun_failed else 1


def format_verdicts(verdicts: list[Verdict], old_id: str, new_id: str, not_judged: list[str] = ()) -> str:
    """The verdict lines, then one per experiment of the recorded suite that was `not_judged` (the
    recorded run has no row of it), then the summary."""
    width = max([len(v.experiment) for v in verdicts] + [len(e) for e in not_judged] + [10])
    lines = [f"verdict: {old_id} (recorded) -> {new_id} (now)"]
    for v in verdicts:
        pad = f"  {'':<{width}}  {'':<6}    "
        lines.append(f"  {v.experiment:<{width}}  {v.mode:<6}  {v.verdict}: {v.detail}")
        lines += [f"{pad}compared: {c}" for c in v.compared]
        lines += [f"{pad}differs: {c}" if " -> " in c else f"{pad}{c}" for c in v.causes]
        if not any(" -> " in c for c in v.causes):
            lines.append(f"{pad}differs: no recorded setting (same settings, data, code and environment)")
    lines += [f"  {e:<{width}}  {'':<6}  not judged: the recorded run has no row of it" for e in not_judged]
    counted = [v for v in verdicts if v.counted]
    same = sum(v.reproduced for v in counted)
    as_recorded = sum(v.verdict.endswith(" as recorded") for v in counted)
    lines.append((f"{same} of {len(counted)} strict experiment(s) reproduced bitwise" if counted
                  else "no experiment held to a bitwise reproduction")
                 + (f" ({as_recorded} failed or diverged as recorded: a failure, not a reproduction)" if as_recorded else "")
                 + (f"; {len(verdicts) - len(counted)} not held to it (fast mode, or kernel timings)"
                    if len(counted) < len(verdicts) else "")
                 + (f"; {len(not_judged)} not judged (never run by the recorded run)" if not_judged else ""))
    return "\n".join(lines)
