"""Looking at runs that already happened: many runs in one frame and their comparison (compare),
the cross-run report (report), the static dashboard (dashboard), the MLflow UI (ui).

May import: harness.core, harness.run (results files, the shared number formats) and harness.track
(reading runs back from MLflow). Nothing of gate/ or the CLI.
"""
