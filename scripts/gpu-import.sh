#!/usr/bin/env bash
# Bring scripts/gpu-validate.sh's outputs home: unpack the run directories, sync them into MLflow,
# and write the curated reports and the gate's baseline where they are committed.
#
#   scripts/gpu-import.sh NAME DIR...     NAME: a short name for the GPU (e.g. h100); DIR: folders
#                                         holding what gpu-validate.sh left in $OUT (one per call)
#
#   results/gpu/NAME/{runs,book}/           the run directories and the book's JSON (git-ignored)
#   MLflow                                  every run, synced (--tracking-uri from $MLFLOW_TRACKING_URI,
#                                           else results/mlflow.db)
#   results/reference/NAME/summary.md       scripts/validate_summary.py over all of them (committed)
#   results/reference/NAME/<suite>-report.md  each suite's latest run report, and env.json
#   results/baselines/kernels-<device class>.json   the regression gate's baseline (suites/kernels-ci.yaml),
#                                           e.g. kernels-cuda-nvidia-h100-80gb-hbm3.json
#
# Environment: RESULTS [results] the results root; PYTHON [python].
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 NAME DIR..." >&2; exit 2; }
cd "$(dirname "$0")/.."
NAME=$1; shift
RESULTS=${RESULTS:-results}
PY=${PYTHON:-python}
home="$RESULTS/gpu/$NAME"
ref="$RESULTS/reference/$NAME"
mkdir -p "$home" "$ref" "$RESULTS/baselines"

for dir in "$@"; do
  [ -d "$dir" ] || { echo "$dir: no such directory" >&2; exit 2; }
  if [ -f "$dir/runs.tar.gz" ]; then tar -xzf "$dir/runs.tar.gz" -C "$home"; fi
  [ -f "$dir/env.json" ] && cp "$dir/env.json" "$ref/env.json"
  for base in "$dir"/kernels-*.json; do
    [ -f "$base" ] || continue
    class=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["device_class"])' "$base")
    cp "$base" "$RESULTS/baselines/kernels-$class.json"
    echo "baseline: $RESULTS/baselines/kernels-$class.json"
  done
done

[ -d "$home/runs" ] || { echo "no run directories in $* (no runs.tar.gz)" >&2; exit 2; }
"$PY" -m harness sync "$home/runs" --out "$RESULTS"
"$PY" scripts/validate_summary.py "$home/runs" --book "$home/book" --out "$ref/summary.md"
for suite_dir in "$home"/runs/*/; do
  latest=$(ls -d "$suite_dir"*/ | sort | tail -1)
  cp "$latest/report.md" "$ref/$(basename "$suite_dir")-report.md"
done
echo "reports: $ref"
