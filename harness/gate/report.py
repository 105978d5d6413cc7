"""check.md: the gate's verdicts as a markdown table, with both sides' environments."""
from __future__ import annotations

import statistics


def markdown(rows, gone, base, current, baseline_path, threshold, mode, counts: dict, alpha: float) -> str:
    from harness.gate.measure import SLOWDOWN_ENV

    env_b, env_c = base.get("env", {}), current["env"]
    cal_b = {t: statistics.median(c["best_s"]) for t, c in base.get("calibration", {}).items()}
    cal_c = {t: statistics.median(c["best_s"]) for t, c in current["calibration"].items()}
    other = (f"the stored baseline {baseline_path}" if mode == "stored" else
             f"commit {env_b.get('git_commit')} measured side by side (A/B)"
             + (f", the commit of {baseline_path}" if baseline_path else ""))
    out = [f"# check: {current['suite']} against {other}", "",
           f"{len(rows)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
           + f". Regressed = slower than {1 + threshold:.2f}x the other side AND p < {alpha} over "
           f"{current['method']['rounds']} rounds ("
           + ("medians of the normalised samples, one-sided Mann-Whitney U" if mode == "stored" else
              "median of the per-round ratios, the two sides of a round timed back to back; one-sided sign test")
           + "); ambiguous = beyond the threshold, not significant.", "",
           f"| | {'baseline' if mode == 'stored' else 'reference (REV)'} | this run |", "| --- | --- | --- |"]
    for label, key in (("recorded", "created_at"), ("device class", "device_class")):
        out.append(f"| {label} | {base.get(key)} | {current.get(key)} |")
    for key in ("host", "git_describe"):
        out.append(f"| {key} | {env_b.get(key)} | {env_c.get(key)} |")
    machine_b, machine_c = base.get("machine", {}), current.get("machine", {})
    for key in dict.fromkeys([*machine_b, *machine_c]):
        mark = "" if machine_b.get(key) == machine_c.get(key) else " **(differs)**"
        out.append(f"| {key} | {machine_b.get(key)} | {machine_c.get(key)}{mark} |")
    for t in sorted(set(cal_b) | set(cal_c)):
        out.append(f"| calibration, {t} thread(s) | {us(cal_b.get(t))} | {us(cal_c.get(t))} |")
    if current["method"]["injected_slowdown"]:
        out.append(f"| injected slowdown | | x{current['method']['injected_slowdown']} ({SLOWDOWN_ENV}) |")
    out += ["", "Times: median over rounds of each round's best block, raw (the ratio is of normalised times).",
            "", "| verdict | case | other side | current | ratio | p | speedup (other side -> current) | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else ""
        p = f"{r['p_value']:.2g}" if r["p_value"] is not None else ""
        speed = "" if r["current_speedup"] is None or r["variant"] == r["speedup_vs"] else (
            f"vs {r['speedup_vs']}: {_x(r['baseline_speedup'])} -> {_x(r['current_speedup'])}")
        out.append(f"| {r['verdict']} | `{r['case']}` | {us(r['baseline_s'])} | {us(r['current_s'])} | {ratio} "
                   f"| {p} | {speed} | {r['reason'] or ''} |")
    if gone:
        out += ["", "On the other side but not in this run: " + ", ".join(f"`{k}`" for k in gone)]
    return "\n".join(out) + "\n"


def _x(speedup) -> str:
    return "-" if speedup is None else f"{speedup:.2f}x"


def us(seconds) -> str:
    return "" if seconds is None else f"{seconds * 1e6:.1f} us"
