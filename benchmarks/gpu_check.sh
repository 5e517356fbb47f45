#!/usr/bin/env bash
# The check a lent GPU runs, in one call of at most 8 minutes; everything it finds goes
# to one folder (at most 8 files: summary.txt, versions.txt, tests.log, model.json,
# pipeline.log, ucla.log, ucla_eval_test.json).
#
#   benchmarks/gpu_check.sh [--tiny] [--wheels=DIR] [--ucla_data=DIR] [--only=STEPS] [OUT]
#
#   OUT          the output folder (default: $OUT)
#   --tiny       every step on this machine's CPU with tiny shapes, in a few minutes:
#                the way to test this script without a GPU
#   --wheels     a folder of wheels installed first (pip --no-index --no-deps, into
#                /tmp), for the packages the GPU machine lacks (below)
#   --ucla_data  a TFDS data_dir holding nw_ucla/ (built here, carried)
#   --only       some of: versions,tests,model,pipeline,ucla (default: all, in order)
#
# Steps:
#   versions  nvidia-smi, Python, jax/jaxlib/flax/optax/orbax, the devices
#   tests     the tests of the network on the accelerator (ops, mixers, models, the
#             benchmark; with --tiny the mixers and the benchmark), float32 products
#             at full precision
#   model     python -m benchmarks.model at T=300, M=2: released and lean, float32 and
#             bfloat16, N = 64, 128, 256 (a batch that does not fit is an OOM row)
#   pipeline  python -m benchmarks.data pipeline: the input pipeline alone, T=300,
#             batch 256, on synthetic NTU files it builds, 0 and 8 grain workers
#   ucla      configs/ucla.py trained to the end on the carried NW-UCLA records: wall
#             time, final and best top-1; skipped, saying why, without configs/ucla.py
#             or the records
# Each step runs under a time limit: its own cap, and at most what is left of
# GPU_CHECK_BUDGET_S (default 470 s) for the whole call. A step that fails or runs out
# of time is reported and the next one runs. The NW-UCLA run is the longest: when it
# does not finish within the budget, run it alone in a second call (--only=ucla).
#
# Carrying what the GPU machine lacks (it has jax, flax, optax and orbax, not TFDS,
# grain, array_record or ml_collections). Here, in the repository root, once:
#
#   echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
#     -d .gpu/wheels ml_collections tensorflow_datasets array_record grain dm-tree \
#     promise immutabledict simple_parsing docstring_parser tensorflow_metadata \
#     googleapis-common-protos termcolor toml tensorboardX importlib_resources
#   python -m data_prep.build nw_ucla --manual_dir=<NW-UCLA all_sqe> --data_dir=.gpu/ucla
#
# then run, with `.gpu` carried (under 64 MiB together with the tree):
#
#   benchmarks/gpu_check.sh --wheels=.gpu/wheels --ucla_data=.gpu/ucla
set -uo pipefail

tiny=0 wheels='' ucla_data='' only='versions,tests,model,pipeline,ucla' out=${OUT:-}
for arg in "$@"; do
  case $arg in
    --tiny) tiny=1 ;;
    --wheels=*) wheels=${arg#*=} ;;
    --ucla_data=*) ucla_data=${arg#*=} ;;
    --only=*) only=${arg#*=} ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
if [[ -z $out ]]; then
  echo 'error: gpu_check.sh: give the output folder as an argument or in $OUT' >&2
  exit 2
fi
for step in ${only//,/ }; do
  case $step in versions|tests|model|pipeline|ucla) ;;
    *) echo "error: gpu_check.sh: --only: unknown step $step" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
work=${GPU_CHECK_WORK:-/tmp/gpu_check}
mkdir -p "$work"
summary=$out/summary.txt
budget=${GPU_CHECK_BUDGET_S:-470}
start=$SECONDS
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if (( tiny )); then
  export JAX_PLATFORMS=cpu
fi

say() { echo "$*" | tee -a "$summary"; }

# run STEP CAP_S LOG COMMAND...: COMMAND under the smaller of CAP_S and the time left,
# its output appended to LOG; says how long it took and how it ended.
run() {
  local step=$1 cap=$2 log=$3
  shift 3
  local left=$(( budget - (SECONDS - start) ))
  local limit=$(( cap < left ? cap : left ))
  if (( limit < 5 )); then
    say "[$step] skipped: no time left of the ${budget}s budget"
    return 1
  fi
  local begin=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  local took=$(( SECONDS - begin ))
  if (( rc == 124 || rc == 137 )); then
    say "[$step] stopped after ${took}s (time limit ${limit}s): $*"
  elif (( rc != 0 )); then
    say "[$step] failed (exit $rc) after ${took}s: $*"
  else
    say "[$step] done in ${took}s"
  fi
  return $rc
}

wants() { [[ ,$only, == *,$1,* ]]; }

: > "$summary"
say "gpu_check.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC') tiny=$tiny only=$only out=$out"
say "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with changes)')"

if [[ -n $wheels ]]; then
  if ls "$wheels"/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$work/site" "$wheels"/*.whl >> "$summary" 2>&1 \
      && say "wheels: installed $(ls "$wheels"/*.whl | wc -l) from $wheels into $work/site" \
      || say "wheels: installing from $wheels failed (above)"
    export PYTHONPATH=$PYTHONPATH:$work/site
  else
    say "wheels: no .whl files in $wheels"
  fi
fi

if wants versions; then
  {
    echo "## nvidia-smi"
    nvidia-smi 2>&1 || echo 'nvidia-smi: not available'
    echo "## CPU"
    grep -m1 'model name' /proc/cpuinfo; nproc
    echo "## Python and libraries"
    python3 - <<'EOF'
import importlib, sys
print('python', sys.version.split()[0])
for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'numpy', 'ml_collections',
             'tensorflow_datasets', 'grain', 'array_record', 'torch'):
  try:
    module = importlib.import_module(name)
    print(name, getattr(module, '__version__', 'installed'))
  except Exception as e:  # pylint: disable=broad-except
    print(name, 'missing:', type(e).__name__, str(e).splitlines()[0][:100])
import jax
print('backend', jax.default_backend(), 'devices', jax.devices())
EOF
  } > "$out/versions.txt" 2>&1
  say "[versions] $(grep -E '^(jax|jaxlib|flax) ' "$out/versions.txt" | tr '\n' ' ')"
  say "[versions] $(grep -E '^backend' "$out/versions.txt")"
fi

if wants tests; then
  # On the GPU, float32 products at full precision (not TF32): the tests compare the
  # network against float32 references.
  # On a CPU (--tiny) the mixers and the benchmark only: the whole set takes minutes there.
  if (( tiny )); then
    platform=cpu files=(tests/test_mixers.py tests/test_benchmark.py)
  else
    platform=${JAX_PLATFORMS:-cuda}
    files=(tests/test_ops.py tests/test_mixers.py tests/test_models.py tests/test_benchmark.py)
  fi
  run tests 200 "$out/tests.log" env JAX_PLATFORMS="$platform" \
    JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -q -p no:cacheprovider "${files[@]}"
  say "[tests] $(tail -n 1 "$out/tests.log")"
fi

if wants model; then
  if (( tiny )); then
    shape=(--batch=2,4 --frames=16 --persons=2 --num_layers=2 --repeats=1 --steps=1)
  else
    shape=(--batch=64,128,256 --frames=300 --persons=2 --num_layers=10 --repeats=3 --steps=5)
  fi
  run model 220 "$out/model.json" python3 -m benchmarks.model --arch=released,lean \
    --dtype=float32,bfloat16 "${shape[@]}" --json
  python3 - "$out/model.json" <<'EOF' | tee -a "$summary"
import json, sys
from benchmarks import model
lines = [line for line in open(sys.argv[1]) if line.startswith('{"machine"')]
if lines:
  result = json.loads(lines[-1])
  print(result['machine'])
  print(model.format_table(result['rows']))
EOF
fi

if wants pipeline; then
  if (( tiny )); then
    data=(--num_files=72 --batch_size=8 --num_frames=32 --num_batches=3 --streams=joint)
    workers=(0)
  else
    data=(--num_files=1440 --batch_size=256 --num_frames=300 --num_batches=20 --streams=joint,bone)
    workers=(0 8)
  fi
  for count in "${workers[@]}"; do
    run "pipeline, $count workers" 40 "$out/pipeline.log" python3 -m benchmarks.data pipeline \
      --workdir="$work/data" --worker_count="$count" "${data[@]}"
  done
  grep -E 'samples/s|^pipeline:' "$out/pipeline.log" | tee -a "$summary"
fi

if wants ucla; then
  if [[ ! -f configs/ucla.py ]]; then
    say "[ucla] skipped: configs/ucla.py is not in this checkout"
  elif [[ -z $ucla_data || ! -d $ucla_data/nw_ucla ]]; then
    say "[ucla] skipped: no NW-UCLA records (--ucla_data=DIR with DIR/nw_ucla, built with" \
        "python -m data_prep.build nw_ucla --data_dir=DIR)"
  else
    rm -rf "$work/ucla"
    if (( tiny )); then
      recipe=(--config=configs/ucla.py:cpu --config.num_epochs=1 --config.warmup_epochs=0
              --config.eval_every_epochs=1)
    else
      recipe=(--config=configs/ucla.py --config.worker_count=4)
    fi
    begin=$SECONDS
    run ucla 900 "$out/ucla.log" python3 -m stbln_jax.main "${recipe[@]}" \
      --workdir="$work/ucla" --config.data_dir="$ucla_data"
    say "[ucla] wall $(( SECONDS - begin ))s: ${recipe[*]}"
    if [[ -f $work/ucla/eval_test.json ]]; then
      cp "$work/ucla/eval_test.json" "$out/ucla_eval_test.json"
      python3 - "$work/ucla/eval_test.json" <<'EOF' | tee -a "$summary"
import json, sys
report = json.load(open(sys.argv[1]))
best = report.get('best_epoch') or {}
print(f"[ucla] final top-1 {100 * report['top1']:.2f}% (epoch {report['epoch']}, step "
      f"{report['step']}); best top-1 {100 * best.get('top1', float('nan')):.2f}% at epoch "
      f"{best.get('epoch')} of {len(report.get('evaluations', []))} evaluations")
EOF
    else
      say "[ucla] no final report; last lines of its log:"
      grep -E 'epoch [0-9]+ (step|eval)' "$out/ucla.log" | tail -n 3 | tee -a "$summary"
    fi
  fi
fi

say "total $(( SECONDS - start ))s"
