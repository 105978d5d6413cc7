"""`harness dashboard`: a static page, loaded from file:// in a real headless Chromium (Debian's
`chromium`; .ci/run installs it), with no console error, no network request, and data in every
plotly chart; a screenshot is taken."""
from __future__ import annotations

import pytest
from browser import PLOTLY_CHARTS, Browser, find_chromium
from conftest import run_cli
from synthetic_runs import KA, KB, TA, TB, write_runs

RENDERED = "Array.from(document.querySelectorAll('.plotly-graph-div')).filter(gd => gd._fullLayout && gd.calcdata).length"
CHARTS = {"kernel-ks-corr", "training-curves", "throughput-memory", "time-to-accuracy", "kernel-history"}


@pytest.fixture
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    return path


@pytest.fixture
def site(tmp_path):
    write_runs(tmp_path / "results")
    proc = run_cli("dashboard", tmp_path / "results", "--out", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    index = tmp_path / "site" / "index.html"
    assert proc.stdout.strip() == f"dashboard: {index.as_uri()}"
    return index


def test_the_dashboard_opens_offline_and_every_chart_has_data(site, chromium, tmp_path):
    with Browser(chromium) as b:
        b.open(site.as_uri())
        b.wait_for(lambda: b.evaluate(RENDERED) >= len(CHARTS), "plotly charts")
        charts = {c["id"]: c for c in b.evaluate(PLOTLY_CHARTS)}
        captions = b.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('section')).map("
                              "s => [s.querySelector('.js-plotly-plot').id, s.querySelector('.provenance').textContent]))")
        regressions = b.evaluate("document.getElementById('kernel-history').data.filter(t => t.name === 'regression')"
                                 ".map(t => Array.from(t.text))")
        shot = b.screenshot(tmp_path / "dashboard.png")
        errors, urls = b.errors(), b.requested_urls()
    assert errors == []
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls  # no CDN, no server
    assert set(charts) == CHARTS
    for chart in charts.values():
        assert chart["traces"] > 0 and sum(chart["points"]) > 0, chart
    # each chart says which runs, commits and devices it was drawn from
    kernel_runs, train_runs = f"From 2 run(s): {KA}, {KB}", f"From 2 run(s): {TA}, {TB}"
    for chart, caption in captions.items():
        assert caption.startswith(kernel_runs if chart.startswith("kernel") else train_runs), caption
        assert "commit(s) c1c1c1c1c1, c2c2c2c2c2; device(s) cpu (Test CPU)" in caption
    # native at 32x32 went from 100 µs to 150 µs with a 20 µs IQR: the one regression of the history
    assert regressions == [[f"corr2d/native in=32x32 k=3x3: +50% vs {KA}"]]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_the_page_embeds_plotly_and_links_nothing(site):
    from html.parser import HTMLParser

    class Tags(HTMLParser):
        linked: list = []

        def handle_starttag(self, tag, attrs):
            self.linked += [(tag, v) for k, v in attrs if k in ("src", "href") and not v.startswith("#")]

    html = site.read_text(encoding="utf-8")
    tags = Tags()
    tags.feed(html)
    assert tags.linked == []  # no script, style sheet or image from elsewhere: only in-page anchors
    assert len(html) > 1_000_000  # plotly.js itself is inside


def test_no_results_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("dashboard", tmp_path / "empty", "--out", tmp_path / "site")
    assert proc.returncode == 2 and "no results found" in proc.stderr
    assert not (tmp_path / "site").exists()
