"""Scaling a suite out: its shards (harness.suite.shard) run as separate processes or jobs, then
merged into one results table and synced into MLflow by one writer.

Owns: `merge` (shard run directories -> one results table and report, checked to be one suite at one
commit, every shard present once), `launch` (submit the shards through a launcher, show their
progress, wait, merge, sync; `--resume`), and the launchers (launchers/: the interface in base.py,
subprocesses in local.py; Slurm and Ray as optional extras).
May import: harness.core, harness.suite, harness.run (run directories, results, report) and
harness.track (sync). Nothing of gate/, views/ or the CLI.
"""
