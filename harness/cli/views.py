"""report, dashboard, sync, ui: looking at runs that already happened."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.runs import integer
from harness.core.errors import UserError


def add(sub) -> None:
    rep = sub.add_parser("report", help="compare runs: kernel speedups, models mean ± std over seeds, two runs side by side")
    _add_run_selection(rep)
    rep.add_argument("--by", choices=("run", "commit", "device"),
                     help="compare exactly two runs / commits / devices (default: two runs, else two commits)")
    rep.add_argument("--format", choices=("md", "csv", "html"), help="default: from --out's suffix, else md")
    rep.add_argument("--out", type=Path, metavar="FILE", help="write the report here instead of printing it")
    rep.add_argument("--from-mlflow", action="store_true", help="read the runs from MLflow instead of results files")
    rep.add_argument("--tracking-uri", metavar="URI",
                     help="with --from-mlflow (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db)")

    dash = sub.add_parser("dashboard", help="write a static HTML dashboard of runs (opens offline from the file system)")
    _add_run_selection(dash)
    dash.add_argument("--out", type=Path, default=Path("dashboards/site"), metavar="DIR",
                      help="directory to write index.html into (default: dashboards/site/)")

    sync = sub.add_parser("sync", help="log finished run directories (e.g. made with --no-tracking) into MLflow")
    sync.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                      help="run directories, or folders holding them (every tracking.jsonl below is synced)")
    sync.add_argument("--tracking-uri", metavar="URI",
                      help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db)")
    sync.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                      help="results root whose mlflow.db and mlartifacts/ to use (default: results/, as `run --out`)")

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the store `run` writes")
    ui.add_argument("--port", type=integer, default=5000, help="TCP port (default 5000)")
    ui.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                    help="results root whose mlflow.db to open (default: results/, as `run --out`)")
    ui.add_argument("--tracking-uri", metavar="URI", help="another store (default: $MLFLOW_TRACKING_URI, else DIR/mlflow.db)")


def _add_run_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", type=Path, metavar="RUN_DIR",
                   help="run directories, suite directories or results roots (default: results/)")
    p.add_argument("--suite", metavar="NAME", help="only runs of this suite")
    p.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (YYYY-MM-DD or ISO time, UTC)")


def cmd_report(args) -> int:
    from harness.views import report

    fmt = args.format or {".csv": "csv", ".html": "html", ".htm": "html"}.get(args.out.suffix if args.out else "", "md")
    if args.from_mlflow and args.paths:
        raise UserError("--from-mlflow reads the runs from the tracking store: give no RUN_DIR "
                        "(select with --suite / --since)")
    if args.tracking_uri and not args.from_mlflow:
        raise UserError("--tracking-uri is read with --from-mlflow only; add --from-mlflow")
    print(report.report_runs(args.paths, args.suite, args.since, fmt, args.by, args.out,
                             args.tracking_uri if args.from_mlflow else None, args.from_mlflow), end="")
    return 0


def cmd_dashboard(args) -> int:
    from harness.views import dashboard

    index = dashboard.build(args.paths, args.out, suite=args.suite, since=args.since)
    print(f"dashboard: {index.resolve().as_uri()}")
    return 0


def cmd_sync(args) -> int:
    from harness.track.sync import sync_paths

    return sync_paths(args.paths, args.tracking_uri, args.out)


def cmd_ui(args) -> int:
    from harness.views import ui

    return ui.serve(ui.store_uri(args.tracking_uri, args.results), args.port, args.results)


COMMANDS = {"report": cmd_report, "dashboard": cmd_dashboard, "sync": cmd_sync, "ui": cmd_ui}
