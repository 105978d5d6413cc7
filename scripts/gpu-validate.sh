#!/usr/bin/env bash
# Validate the harness on a GPU node that reaches nothing (no PyPI, no tracking server, no mlflow):
# the kernel suite, the training suite strict and fast, strict determinism (the strict suite twice,
# equal fingerprints), the CUDA baseline of the regression gate, the book's own loop for
# comparison, and a summary table. Every run is made with --no-tracking; copy the outputs back and
# `python -m harness sync` them into MLflow there.
#
#   scripts/gpu-validate.sh [STAGE...]      stages, in order (default: all of them):
#     setup        install the carried wheels (.whl/) and the harness itself (--no-deps) into $WORK/site
#     env          python -m harness env --json
#     kernels      suites/kernels.yaml
#     strict       suites/training.yaml (strict fp32)
#     fast         suites/training-fast.yaml (bf16, channels_last, compile, CUDA graphs for LeNet)
#     determinism  the strict suite once more (twice if no strict run is in $WORK yet): fingerprints compared
#     baseline     the regression gate's CUDA baseline (suites/kernels-ci.yaml)
#     book         benchmarks/book_loop.py: VGG-small at 224 and ResNet-18 at 96, one epoch each (needs d2l wheels)
#     summary      scripts/validate_summary.py over everything in $WORK, then pack it all under $OUT
#   (summary always runs last, whatever stages were asked for)
#
# Environment (defaults in brackets):
#   DATA_DIR [.data]   folder holding FashionMNIST/raw/*.gz (a copy of ../shared/data)
#   OUT [$OUT, else results/gpu-validate]   where the packed outputs go, a few files to copy back:
#                      summary.md, runs.tar.gz, kernels-$DEVICE.json, env.json, log.txt
#   WORK [/tmp/harness-validate]   run directories and the install; kept between calls on a warm machine
#   DEVICE [cuda]  PYTHON [python3]  KERNEL_SUITE STRICT_SUITE FAST_SUITE CI_SUITE  (suite files)
#   HARNESS_GIT_COMMIT   the checkout's commit, recorded in env.json where the copy has no .git
#   HARNESS_GIT_DIRTY    0 when that commit is clean (git status), so the gate's baseline can name it
#
# On a GPU machine with no internet: copy .whl (scripts/device-wheels.txt and benchmarks/d2l-wheels.txt,
# downloaded for Python 3.12) and .data beside the checkout, then e.g.
#   HARNESS_GIT_COMMIT=<sha> scripts/gpu-validate.sh setup env strict determinism
# Back here:   tar -xzf <files_at>/runs.tar.gz -C results/gpu/<gpu>/ && python -m harness sync results/gpu/<gpu>/
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
DATA_DIR=${DATA_DIR:-.data}
OUT=${OUT:-results/gpu-validate}
WORK=${WORK:-/tmp/harness-validate}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
KERNEL_SUITE=${KERNEL_SUITE:-suites/kernels.yaml}
STRICT_SUITE=${STRICT_SUITE:-suites/training.yaml}
FAST_SUITE=${FAST_SUITE:-suites/training-fast.yaml}
CI_SUITE=${CI_SUITE:-suites/kernels-ci.yaml}
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(setup env kernels strict fast determinism baseline book)

mkdir -p "$OUT" "$WORK/runs" "$WORK/book"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
failed=()

say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
harness() { "$PY" -m harness "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
step() {  # step NAME CMD...: run it, log it, remember a failure, go on with the next stage
  local name=$1; shift
  say "$name: $*"
  local t0=$SECONDS
  "$@"; local rc=$?
  say "$name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || failed+=("$name (exit $rc)")
}
run_suite() { harness run "$1" --device "$DEVICE" --no-tracking --out "$WORK/runs" --data-dir "$DATA_DIR"; }
strict_runs() { find "$WORK/runs/$(suite_name "$STRICT_SUITE")" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
suite_name() { sed -n 's/^suite: *//p' "$1" | head -1; }

setup() {
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl || return
  fi
  # the harness itself, without its dependencies (the image has torch; mlflow is not needed offline),
  # built from a copy so that no build/ or egg-info is left in the checkout
  rm -rf "$WORK/src" && mkdir -p "$WORK/src" && cp -r pyproject.toml README.md harness "$WORK/src/" || return
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$WORK/site" --upgrade "$WORK/src" || return
  "$PY" -c "import harness, pydantic, torch; print('harness', harness.__version__, 'from', harness.__file__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
}

determinism() {
  [ "$(strict_runs)" -ge 1 ] || run_suite "$STRICT_SUITE" || return
  run_suite "$STRICT_SUITE"
}

book() {
  if ! "$PY" -c "import d2l.torch" 2>/dev/null; then
    echo "d2l is not importable: carry the wheels of benchmarks/d2l-wheels.txt in .whl/ (stage skipped)"
    return 3
  fi
  local raw="$DATA_DIR/FashionMNIST/raw"
  "$PY" benchmarks/book_loop.py --model vgg --epochs 1 --no-plot --data-root "$WORK/d2l-data" --source-raw "$raw" \
        --json "$WORK/book/vgg-224.json" || return
  "$PY" benchmarks/book_loop.py --model resnet18 --epochs 1 --no-plot --data-root "$WORK/d2l-data" --source-raw "$raw" \
        --json "$WORK/book/resnet18-96.json"
}

for stage in "${STAGES[@]}"; do
  case $stage in
    setup) step setup setup ;;
    env) step env bash -c "'$PY' -m harness env --json > '$OUT/env.json' && cat '$OUT/env.json'" ;;
    kernels) step kernels run_suite "$KERNEL_SUITE" ;;
    strict) step strict run_suite "$STRICT_SUITE" ;;
    fast) step fast run_suite "$FAST_SUITE" ;;
    determinism) step determinism determinism ;;
    # a baseline records a clean commit (so `check` can measure it again elsewhere): declared clean
    # with HARNESS_GIT_DIRTY=0 where the copy has no .git, else recorded for this GPU type only
    baseline) step baseline harness baseline "$CI_SUITE" --device "$DEVICE" --out "$OUT/kernels-$DEVICE.json" \
                $([ "${HARNESS_GIT_DIRTY:-}" = 0 ] || echo --allow-dirty) ;;
    book) step book book ;;
    summary) ;;
    *) echo "unknown stage: $stage (known: setup env kernels strict fast determinism baseline book summary)" >&2; exit 2 ;;
  esac
done

if compgen -G "$WORK/runs/*/*/results.parquet" >/dev/null; then
  step summary "$PY" scripts/validate_summary.py "$WORK/runs" --book "$WORK/book" --out "$OUT/summary.md"
  # run directories without checkpoints (VGG-small's is 170 MB), and the book's JSON
  step pack tar -czf "$OUT/runs.tar.gz" -C "$WORK" --exclude=checkpoints runs book
fi
say "done: ${#failed[@]} failed stage(s)${failed:+: ${failed[*]}}; outputs in $OUT"
cd "$REPO" && ls -la "$OUT" | tee -a "$LOG"
[ ${#failed[@]} -eq 0 ]
