"""One run's report: the headline that opens report.md (what ran, how long, one line per experiment,
the suite's note, failed and noisy rows) and report.html (the same text and every plot on one
self-contained page, loaded in headless Chromium). The rows are hand-made and written through the
real results schema; the real runs are in test_runner.py (kernels) and test_train.py (smoke)."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import find_chromium, open_static_page
from synthetic_runs import train_rows

from harness.run import report, results

RUN = "20260301T100000Z-eeeeee"
SIZES = {"in=128x128 k=3x3": 128, "in=8x8 k=3x3": 8, "in=32x32 k=3x3": 32}  # the table's order is not the size order
TIMES = {  # variant: seconds per call at 8, 32, 128 (None: capped)
    "loop": (1e-3, 1e-2, None), "vectorized": (1e-5, 2e-4, 3e-3), "native": (2e-5, 5e-5, 1e-3)}
HOSTILE = "<script>alert(1)</script> [link](http://evil.example/x) ![img](https://evil.example/i.png)"
ENV = {"started_at": "2026-03-01T10:00:00+00:00", "finished_at": "2026-03-01T10:04:05+00:00"}


def _base(experiment: str) -> dict:
    return {"suite": "mixed", "run_id": RUN, "shard": "0/1", "device": "cpu", "device_name": "Test CPU",
            "threads": 2, "determinism": "strict", "status": "ok", "experiment": experiment, "seed": 0,
            "wall_s": 1.0}


def kernel_rows() -> list[dict]:
    rows = []
    for size, n in SIZES.items():
        column = {8: 0, 32: 1, 128: 2}[n]
        for variant, times in TIMES.items():
            t = times[column]
            row = _base("corr") | {"kind": "kernel", "family": "corr2d", "variant": variant, "size": size,
                                   "baseline": "loop", "flops": 18.0 * (n - 2) ** 2, "n_measurements": 9}
            if t is None:
                rows.append(row | {"status": "capped", "error": "not run: 16,129 Python loop iterations > 10,000"})
                continue
            base = TIMES["loop"][column]
            rows.append(row | {"time_median_s": t, "time_iqr_s": t * 0.02, "noisy": False,
                               "speedup": None if base is None else base / t})
    rows[1] |= {"time_iqr_s": rows[1]["time_median_s"] * 0.4, "noisy": True}  # vectorized at 128x128
    rows.append(_base("pool") | {"kind": "kernel", "family": "pool2d", "variant": "max", "size": "in=4x4 p=2x2",
                                 "baseline": "max", "status": "failed",
                                 "error": f"RuntimeError: boom {HOSTILE}\n  second line of the error"})
    return rows


def training_rows() -> list[dict]:
    rows = [r | {"suite": "mixed", "run_id": RUN, "shard": "0/1"} for r in train_rows("20260101T110000Z-cccccc")]
    diverged = dict(rows[-1]) | {"experiment": "vgg_small", "model": "vgg", "variant": "vgg", "status": "diverged",
                                 "error": "training loss became nan at epoch 2", "val_acc": None}
    return rows + [diverged]


EXPERIMENTS = ["corr", "pool", "lenet", "resnet18", "vgg_small"]


def _plot(path: Path, fmt: str = "png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.loglog([1, 10, 100], [1, 20, 900])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt)
    plt.close(fig)


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "mixed" / RUN
    df = results.save(kernel_rows() + training_rows(), d)
    (d / "suite.yaml").write_text("suite: mixed\ndescription: kernels and models\n"
                                  "note: Accuracy here is a pipeline check.\nexperiments: []\n")
    for name in ("training.png", "corr-time.png", "lenet.png", "resnet18.svg"):
        _plot(d / "plots" / name, name.split(".")[1])
    report.write_reports(d, df, ENV, [])
    return d


def headline_of(run_dir: Path) -> str:
    text = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## At a glance" in text and "## Details" in text
    return text.split("## Details")[0]


def test_the_headline_says_what_ran_how_long_and_names_every_experiment(run_dir):
    head = headline_of(run_dir)
    assert head.startswith(f"# mixed — run {RUN}\n\n## At a glance\n")
    assert ("- **Ran:** suite `mixed` (kernels and models): 5 experiments, 14 rows, on cpu (Test CPU, 2 threads), "
            "strict determinism, fp32") in head
    assert "- **Took:** 4 min 05 s from start to finish (2026-03-01 10:00:00 to 10:04:05 UTC)" in head
    assert "- **Note:** Accuracy here is a pipeline check." in head
    for exp in EXPERIMENTS:
        assert f"- `{exp}`" in head, exp


def test_a_kernel_line_gives_each_variants_speedup_range_and_where_it_is_fastest(run_dir):
    (line,) = [x for x in headline_of(run_dir).splitlines() if x.startswith("- `corr`")]
    # sizes in FLOPs order (8, 32, 128), not the table's: vectorized wins at 8x8, native from 32x32 on
    assert line == ("- `corr` (kernel `corr2d`): vectorized 50–100× over `loop`; native 50–200× over `loop`; "
                    "vectorized fastest up to in=8x8 k=3x3, native from in=32x32 k=3x3; "
                    "`loop` not timed at 1 of 3 sizes (capped)")


def test_training_lines_and_failed_and_noisy_rows(run_dir):
    head = headline_of(run_dir)
    assert "- `lenet`: val acc 0.820 ± 0.028 after 3 epochs (mean ± std over 2 seeds), 1,100 ± 141 img/s" in head
    assert "- `resnet18`: val acc 0.850 after 3 epochs, 300 img/s" in head
    assert "- `vgg_small` (model `vgg`): no result (1 diverged)" in head
    assert "- **Failed (2 rows):**" in head
    assert f"  - `pool` max in=4x4 p=2x2: **failed** — RuntimeError: boom {HOSTILE}\n" in head
    assert "second line of the error" not in head  # the first line only; the tables below keep the rest
    assert "  - `vgg_small` vgg 28x28: **diverged** — training loss became nan at epoch 2" in head
    assert "- **Noisy (1 row):**\n  - `corr` vectorized in=128x128 k=3x3: IQR 40% of the median (3 ms)" in head


def test_a_clean_run_says_so_and_the_tables_stay(tmp_path):
    d = tmp_path / "k"
    rows = [r for r in kernel_rows() if r["experiment"] == "corr" and not r.get("noisy")]
    df = results.save(rows, d)
    report.write_reports(d, df, {}, [])  # no suite.yaml, no start time: an old run
    text = (d / "report.md").read_text()
    assert "- **Failed or noisy rows:** none" in text and "**Note:**" not in text
    assert "- **Took:** 8 s in the rows themselves" in text
    assert "## corr — kernel `corr2d`" in text and "Speedup over `loop`:" in text


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_self_contained_escapes_results_and_embeds_every_plot(run_dir):
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    linked = [(t, a.get("src") or a.get("href")) for t, a in parser.tags if a.get("src") or a.get("href")]
    assert all(value.startswith("data:") for _, value in linked), linked  # nothing from a network or a file
    assert [t for t, _ in parser.tags if t in ("script", "iframe", "object", "embed", "a")] == []
    images = [a for t, a in parser.tags if t == "img"]
    assert sorted(a["src"].split(";")[0] for a in images) == ["data:image/png"] * 3 + ["data:image/svg+xml"]
    # overview first, then in experiment order, each with its caption
    assert [a["alt"] for a in images] == ["every model's training curves side by side",
                                          "corr: time per call against size (log-log), a line per variant",
                                          "lenet: training curves", "resnet18: training curves"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "evil.example/x" in html  # shown, as text
    for exp in EXPERIMENTS:
        assert f"<code>{exp}</code>" in html
    assert html.count("<table>") == 7  # time, speedup and GFLOP/s of corr and of pool, and training


def test_the_page_loads_offline_in_chromium_with_no_errors(run_dir):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    page = open_static_page(chromium, run_dir / "report.html")
    assert page["errors"] == []
    assert page["urls"] and all(u.startswith(("file://", "data:")) for u in page["urls"]), page["urls"]
    assert len(page["images"]) == 4 and all(width > 0 for _, width in page["images"]), page["images"]
    assert "At a glance" in page["text"] and "Accuracy here is a pipeline check." in page["text"]
    assert "<script>alert(1)</script>" in page["text"]  # the error's text, displayed, never run


def test_a_suite_note_is_validated_and_kept_in_the_resolved_suite(tmp_path):
    from harness.suite import load_suite

    smoke = load_suite(Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml")
    assert "pipeline check" in smoke.note and "sigmoid LeNet" in smoke.note
    assert smoke.resolved()["note"] == smoke.note
    (tmp_path / "s.yaml").write_text("suite: s\nexperiments:\n  - {name: a, kind: learn_kernel}\n")
    plain = load_suite(tmp_path / "s.yaml")
    assert plain.note == "" and "note" not in plain.resolved()


def test_a_lead_that_changes_hands_is_counted_and_many_noisy_rows_are_summed_per_experiment(tmp_path):
    rows = []
    for i, n in enumerate((8, 16, 32, 64)):  # vectorized and native take turns being faster
        size, fast = f"in={n}x{n} k=3x3", ("vectorized", "native")[i % 2]
        for variant in ("vectorized", "native"):
            t = 1e-5 * n * (1 if variant == fast else 2)
            rows.append(_base("flip") | {"kind": "kernel", "family": "corr2d", "variant": variant, "size": size,
                                         "baseline": "vectorized", "flops": 18.0 * (n - 2) ** 2, "n_measurements": 9,
                                         "time_median_s": t, "time_iqr_s": t * (0.2 + 0.1 * i), "noisy": True})
    d = tmp_path / "flip"
    report.write_reports(d, results.save(rows, d), {}, [])
    head = headline_of(d)
    # a tie goes to the variant that won first (the smallest size)
    assert "`flip` (kernel `corr2d`): vectorized fastest at 2 of 4 sizes, native at 2 (at the largest, in=64x64 k=3x3: native)" in head
    assert ("- **Noisy (8 of 8 rows):** IQR over 10% of the median; a busy machine?\n"
            "  - `flip`: 8 of 8 rows; the worst: vectorized in=64x64 k=3x3, IQR 50% of the median (1.28 ms)\n") in head
