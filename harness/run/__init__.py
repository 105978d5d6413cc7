"""Running a suite on one machine: the runner, the run directory and resume, the results table,
one run's report.md and report.html, and the trackers the runner logs through without MLflow (the journal that
writes tracking.jsonl, the null tracker).

Owns: run directories (<out>/<suite>/<UTC time>-<id>/), results.csv/.parquet and their schema,
report.md and report.html (their headline), tracking.jsonl, state.json and resume.
May import: harness.core, harness.suite and the domain packages (kernels, models, train). Never
MLflow (harness.track) nor gate/, views/ or the CLI: live tracking is handed in as a tracker.
"""
