#!/usr/bin/env bash
# Run the GPU checks on the machine with the GPU, from anywhere in the repo.
# Prepare here first with `bash scripts/gpu_wheels.sh` (it fills the ignored folder .whl/),
# then, with the device tool: carry [".whl"], command `bash scripts/gpu_run.sh`.
#
# That machine has no internet and no TensorFlow; it has JAX and PyTorch with CUDA. This
# script installs the carried wheels into $SITE, prints the versions and the GPU, then for
# each backend:
#   a) the loss path of every formulation that backend supports, in float32 and under the
#      mixed_float16 policy (keras_loss_recipes.losses.paths.detect_loss_path)
#   b) a small sweep under stress (logits x300): softmax_ce, sparse_from_logits,
#      clipped_probs, with its comparison.md
#   c) benchmarks/throughput.py at each of $BENCH_BATCHES
# Every step prints a header and goes on after a failure; the exit status is 1 if any failed.
#
# Output, in $OUT (at most 8 files come back from the device tool, so few and flat):
#   <backend>.log            everything each backend's steps printed
#   loss_paths.jsonl         one line per backend x policy x formulation
#   summary.json             versions, GPU, each step's status and time, loss paths, and each
#                            benchmark's settings, samples/s per precision and side, and goals
#   results.tar.gz           comparison_<backend>.md, benchmark_<backend>_batch<N>/performance.json
#                            and the sweep directories (metrics, logs, events; no checkpoints)
# The sweep directories themselves (many files) are written under $WORK, not $OUT.
#
# Order: the loss paths and the sweep of every backend first (they are short), then the
# benchmarks batch by batch, each backend in turn, so that a call cut short still brings
# back the most. DEADLINE (seconds from the start, 0 for none) bounds the whole script:
# each step's limit is the smaller of STEP_TIMEOUT and the time left before DEADLINE less
# 30 s for the summary, and a step with under 30 s left is skipped and recorded as such.
#
# Environment:
#   OUT            output folder (default gpu_out)
#   BACKENDS       backends to check, space or comma separated (default "jax torch")
#   PYTHON         the interpreter (default python3: the one that holds PyTorch there)
#   SITE           where the wheels are installed (default /tmp/site); INSTALL_WHEELS=0 skips
#   WORK           scratch folder for sweeps and helpers (default /tmp/gpu_work)
#   QUICK=1        tiny sizes, for trying the script on a CPU
#   STEP_TIMEOUT   seconds before a step is stopped (default 300)
#   DEADLINE       seconds the whole script may take (default 0: no limit)
#   SWEEP_ARGS     replaces the sweep's size overrides
#   BENCH_ARGS     replaces the benchmark's arguments (other than --backend and --batch)
#   BENCH_BATCHES  batch sizes to benchmark (default "128 1024")
set -euo pipefail
export PYTHONUNBUFFERED=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

OUT=${OUT:-gpu_out}
BACKENDS=${BACKENDS:-jax torch}
BACKENDS=${BACKENDS//,/ }
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
WORK=${WORK:-/tmp/gpu_work}
QUICK=${QUICK:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
DEADLINE=${DEADLINE:-0}
BENCH_BATCHES=${BENCH_BATCHES:-128 1024}
BENCH_BATCHES=${BENCH_BATCHES//,/ }
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
STEPS=$WORK/steps.tsv
: >"$STEPS"

if [[ $QUICK == 1 ]]; then
    SWEEP_ARGS=${SWEEP_ARGS:-model=mlp data.max_train_examples=300 trainer.epochs=1}
    BENCH_ARGS=${BENCH_ARGS:---quick --precisions float32 --no-processes --no-backends --no-profile --no-docs}
else
    # The size of experiment=stability_stress: the mlp, 2,000 training images, 5 epochs.
    SWEEP_ARGS=${SWEEP_ARGS:-model=mlp data.max_train_examples=2000 trainer.epochs=5}
    # 10,000 images an epoch (the deadline holds both backends); float32 and bfloat16, which
    # the GPU computes natively; no whole-process runs (they start TensorFlow's default).
    BENCH_ARGS=${BENCH_ARGS:---images 10000 --repeats 2 --epochs 3 --precisions float32,mixed_bfloat16 --no-processes --no-backends --no-profile --no-docs}
fi
SWEEP_LOSSES=softmax_ce,sparse_from_logits,clipped_probs

header() { printf '\n===== %s  [%s]\n' "$*" "$(date +%T)"; }

# run_step BACKEND NAME LOG COMMAND...: header, command with a time limit, output also into
# LOG; the status goes into $STEPS and never stops the script.
run_step() {
    local backend=$1 name=$2 log=$3
    shift 3
    header "$backend: $name" | tee -a "$log"
    local limit=$STEP_TIMEOUT
    if ((DEADLINE > 0)); then
        local left=$((DEADLINE - SECONDS - 30))
        ((left < limit)) && limit=$left
        if ((limit < 30)); then
            echo "----- $backend: $name: skipped, ${left} s left before DEADLINE=$DEADLINE" | tee -a "$log"
            printf '%s\t%s\t%s\t%s\t%s\n' "$backend" "$name" "-1" "0" "skipped: no time left" >>"$STEPS"
            return 0
        fi
    fi
    echo "+ $*  (limit ${limit} s)" | tee -a "$log"
    local start=$SECONDS rc=0
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$log" || rc=$?
    local secs=$((SECONDS - start)) status=ok
    if ((rc == 124 || rc == 137)); then status="timed out after ${limit} s"; elif ((rc)); then status="FAILED (exit $rc)"; fi
    echo "----- $backend: $name: $status, ${secs} s" | tee -a "$log"
    printf '%s\t%s\t%s\t%s\t%s\n' "$backend" "$name" "$rc" "$secs" "$status" >>"$STEPS"
}

# --- setup -------------------------------------------------------------------------------
header "setup: install the carried wheels"
if [[ ${INSTALL_WHEELS:-1} != 1 ]]; then
    echo "INSTALL_WHEELS=${INSTALL_WHEELS}: not installing; using what $PYTHON has"
elif ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "no .whl/*.whl here (did the call carry .whl?); using what $PYTHON has"
else
    # Only wheels this interpreter can take: on the GPU machine that is all of them; on a
    # machine with another Python the compiled ones (optree, cp312) must come from elsewhere.
    mapfile -t WHEELS < <("$PYTHON" - <<'PY'
import pathlib, sys
wheels = sorted(str(p) for p in pathlib.Path(".whl").glob("*.whl"))
try:
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename
except ImportError:
    print("\n".join(wheels))
    raise SystemExit
ours = set(sys_tags())
for w in wheels:
    if ours & set(parse_wheel_filename(pathlib.Path(w).name)[3]):
        print(w)
    else:
        print(f"WARNING: skipping {w}: not built for this Python/platform", file=sys.stderr)
PY
)
    printf '  %s\n' "${WHEELS[@]}"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${WHEELS[@]}"
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

header "setup: versions and GPU"
"$PYTHON" - "$WORK/env.json" <<'PY'
import importlib.metadata as md, json, platform, sys

info = {"python": sys.version.split()[0], "executable": sys.executable, "machine": platform.machine()}
for name in ["jax", "jaxlib", "torch", "keras", "hydra-core", "omegaconf", "mlxtend", "optree", "numpy"]:
    try:
        info[name] = md.version(name)
    except md.PackageNotFoundError:
        info[name] = None
try:
    import jax
    info["jax_devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
except Exception as err:  # noqa: BLE001 - reported, not fatal
    info["jax_devices"] = f"error: {type(err).__name__}: {err}"
try:
    import torch
    info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
except Exception as err:  # noqa: BLE001
    info["torch_cuda"] = f"error: {type(err).__name__}: {err}"
try:
    import tensorflow  # noqa: F401
    info["tensorflow"] = "importable"
except ImportError:
    info["tensorflow"] = "not importable"
for key, value in info.items():
    print(f"{key:12s} {value}")
json.dump(info, open(sys.argv[1], "w"), indent=1)
PY
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L | tee "$WORK/gpus.txt"
else
    echo "nvidia-smi: not found" | tee "$WORK/gpus.txt"
fi

# --- the loss-path driver ------------------------------------------------------------------
cat >"$WORK/loss_paths.py" <<'PY'
"""Loss path of every formulation this backend supports, in float32 and mixed_float16."""
import json
import math
import sys
import traceback

import keras

from keras_loss_recipes import losses
from keras_loss_recipes.losses.paths import detect_loss_path


def number(x):
    return x if math.isfinite(x) else str(x)  # JSON has no NaN/inf


backend = keras.backend.backend()
rows = []
for policy in ("float32", "mixed_float16"):
    keras.config.set_dtype_policy(policy)
    for name in losses.names():
        setup = losses.get(name)
        if backend not in setup.formulation.backends:
            continue
        row = {"backend": backend, "policy": policy, "loss": name, "head": setup.head}
        try:
            found = detect_loss_path(setup)
            row.update(path=found.path, measured=[number(v) for v in found.measured],
                       exact=[number(v) for v in found.exact])
        except Exception as err:  # noqa: BLE001 - recorded per formulation
            traceback.print_exc()
            row.update(path=None, error=f"{type(err).__name__}: {err}")
        print(f"{backend:8s} {policy:14s} {name:24s} {row['path'] or 'ERROR ' + row['error']}")
        rows.append(row)
keras.config.set_dtype_policy("float32")
with open(sys.argv[1], "a") as f:
    for row in rows:
        f.write(json.dumps(row) + "\n")
sys.exit(1 if any(row["path"] is None for row in rows) else 0)
PY

# --- per backend: loss paths and the stress sweep -----------------------------------------
: >"$OUT/loss_paths.jsonl"
rm -f "$OUT/results.tar.gz"
RESULTS=$WORK/results
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
for b in $BACKENDS; do
    log=$OUT/$b.log
    : >"$log"
    export KERAS_BACKEND=$b

    run_step "$b" "loss paths (float32, mixed_float16)" "$log" \
        "$PYTHON" "$WORK/loss_paths.py" "$OUT/loss_paths.jsonl"

    sweep=$WORK/sweep_$b
    rm -rf "$sweep"
    # shellcheck disable=SC2086  # SWEEP_ARGS is a list of overrides
    run_step "$b" "sweep under stress=logits_x300" "$log" \
        "$PYTHON" train.py -m backend="$b" loss=$SWEEP_LOSSES stress=logits_x300 \
        $SWEEP_ARGS hydra.sweep.dir="$sweep"
    if [[ -f $sweep/comparison.md ]]; then
        cp "$sweep/comparison.md" "$RESULTS/comparison_$b.md"
        { echo "--- comparison.md"; cat "$sweep/comparison.md"; } | tee -a "$log"
    else
        echo "no $sweep/comparison.md" | tee -a "$log"
    fi
done

# --- the framework against the plain keras.io convnet, same backend, same batch -------------
for batch in $BENCH_BATCHES; do
    for b in $BACKENDS; do
        export KERAS_BACKEND=$b
        # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
        run_step "$b" "throughput benchmark, batch $batch" "$OUT/$b.log" \
            "$PYTHON" benchmarks/throughput.py --backend "$b" --batch "$batch" $BENCH_ARGS \
            --out "$RESULTS/benchmark_${b}_batch$batch"
    done
done
unset KERAS_BACKEND

# --- summary -------------------------------------------------------------------------------
header "summary"
for b in $BACKENDS; do
    [[ -d $WORK/sweep_$b ]] && cp -r "$WORK/sweep_$b" "$RESULTS/"
done
"$PYTHON" - "$WORK" "$OUT" "$BACKENDS" "$QUICK" "$RESULTS" <<'PY'
import json, pathlib, re, sys

work, out, backends, quick = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
results = pathlib.Path(sys.argv[5])
# loop: which training loop was measured ("queued": no per-step host reads; scripts/gpu_page.py says so).
summary = {"quick": quick == "1", "loop": "queued", "env": json.loads((work / "env.json").read_text()),
           "gpus": (work / "gpus.txt").read_text().strip().splitlines(), "backends": {}}
steps = [line.split("\t") for line in (work / "steps.tsv").read_text().splitlines()]
paths = [json.loads(line) for line in (out / "loss_paths.jsonl").read_text().splitlines() if line]
for b in backends:
    log = out / f"{b}.log"
    text = log.read_text() if log.exists() else ""
    # One benchmark per batch size, each with its performance.json: settings, samples/s per
    # precision and side, goals (ratios and speedups), the matmul peak and the run's time.
    bench = {}
    for result in sorted(results.glob(f"benchmark_{b}_batch*/performance.json")):
        data = json.loads(result.read_text())
        bench[str(data["settings"]["batch"])] = {
            key: data[key] for key in ("command", "date", "settings", "summary", "goals", "matmul_peak_gflops",
                                        "flops", "seconds") if key in data}
    summary["backends"][b] = {
        "steps": [{"step": s[1], "exit": int(s[2]), "seconds": int(s[3]), "status": s[4]} for s in steps if s[0] == b],
        "loss_paths": {p["policy"]: {} for p in paths if p["backend"] == b},
        "benchmark": bench or None,
        "comparison": ((results / f"comparison_{b}.md").read_text()
                       if (results / f"comparison_{b}.md").exists() else None),
    }
    for p in paths:
        if p["backend"] == b:
            summary["backends"][b]["loss_paths"][p["policy"]][p["loss"]] = p["path"] or p.get("error")
summary["failed_steps"] = [f"{s[0]}: {s[1]}: {s[4]}" for s in steps if s[2] not in ("0", "-1")]
summary["skipped_steps"] = [f"{s[0]}: {s[1]}" for s in steps if s[2] == "-1"]
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PY
tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude='*.keras' --exclude='*.h5' --exclude='*.npz' results
echo
ls -l "$OUT"
failed=$(awk -F'\t' '$3 != 0' "$STEPS" | wc -l)
if ((failed)); then
    echo "gpu_run: $failed step(s) failed or skipped:"
    awk -F'\t' '$3 != 0 {print "  " $1 ": " $2 ": " $5}' "$STEPS"
    exit 1
fi
echo "gpu_run: all steps ok"
