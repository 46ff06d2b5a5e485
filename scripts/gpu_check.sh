#!/usr/bin/env bash
# Prove the CUDA path on one GPU, with nothing downloaded:  bash scripts/gpu_check.sh OUTDIR
#
#   1. imports     which modules are missing (torch is required; rawpy, tifffile, scikit-image
#                  feed the synthetic SID and infer.py: checks that need a missing one are SKIP)
#   2. benchmark   scripts/benchmark.py for CANS++ at the paper sizes, alone on the GPU: plain,
#                  authors_flags and fast first, then the eager modes that say why eager bfloat16
#                  is slow (bf16, bf16_triton, triton_dwconv: seconds each), then the candidates for
#                  a faster fast path (cudagraphs, bf16_compile, fast_triton), then every other
#                  mode; --profile adds each mode's 15 most expensive CUDA kernels to the JSON
#   3. pytest      python -m pytest -m cuda tests/  (fast path vs float32 on the parity vectors,
#                  bf16/fp16 >= 45 dB, fp16 step with the grad scaler, DDP over NCCL, Triton
#                  kernel, infer.py on the GPU, tiled inference)
#      demo        configs/demo.yaml trained on CUDA with train.fast on and off, side by side with
#                  pytest (none of the three is timed); PASS when the final validation PSNRs are
#                  within 0.3 dB
#   4. throughput  test.py --throughput --random-weights --size 1424 2128 (test.fast default)
#   5. benchmark   the same for CANS
#
# Every log and JSON goes under OUTDIR; the last thing printed is the summary table
# (OUTDIR/summary.md). On a machine without a CUDA GPU it says so and exits 0. Exit status 1
# when a check FAILs.
#
# Environment:
#   GPU_CHECK_BUDGET     seconds for the whole run (default 360). Step k must end by a fixed share
#                        of it (benchmark CANS++ 45 %, pytest + demo 80 %, throughput 88 %, benchmark
#                        CANS 100 %), so time a step leaves unused goes to the next; a benchmark cut
#                        short keeps the modes it measured, and a step with no time left is SKIP.
#   GPU_CHECK_DATA       where the synthetic SID for the demo is made (default
#                        ${TMPDIR:-/tmp}/cans_gpu_check_sid; kept, so a rerun does not remake it)
#   GPU_CHECK_REHEARSAL  1: run every step on the CPU with tiny sizes, to check this script itself
#                        (the CUDA tests skip there; no figure of a rehearsal is a GPU result)
#   PYTHON               the interpreter (default: the first of python, python3 that imports torch)
#   CANS_REFERENCE       the reference vectors' folder, for the parity test (see tests/conftest.py)
set -u
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/gpu_check.sh OUTDIR" >&2
    exit 2
fi
OUT=$1
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 2
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
else  # the first of python, python3 that imports torch (a bare `python` may be another interpreter)
    PY=python3
    for candidate in python python3; do
        if command -v "$candidate" > /dev/null 2>&1 && "$candidate" -c "import torch" > /dev/null 2>&1; then
            PY=$candidate; break
        fi
    done
fi
BUDGET=${GPU_CHECK_BUDGET:-360}
REHEARSAL=${GPU_CHECK_REHEARSAL:-0}
DEMO_DATA=${GPU_CHECK_DATA:-${TMPDIR:-/tmp}/cans_gpu_check_sid}
START=$(date +%s)
SUMMARY="$OUT/summary.tsv"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1

record() {  # name status seconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"
}

until_share() {  # seconds left until PCT % of the budget has passed (at least 1: timeout 0 means no limit)
    local left=$(( BUDGET * $1 / 100 - ($(date +%s) - START) ))
    if [ "$left" -lt 1 ]; then left=1; fi
    echo "$left"
}

# --- 1. imports ----------------------------------------------------------------------------------
"$PY" - "$OUT/imports.json" <<'EOF'
import importlib, json, sys
names = ["torch", "triton", "numpy", "yaml", "tqdm", "pytest", "rawpy", "tifffile", "skimage", "PIL", "tensorboard"]
found, missing = {}, []
for n in names:
    try:
        m = importlib.import_module(n)
        found[n] = getattr(m, "__version__", "?")
    except Exception as exc:
        missing.append(n)
info = {"found": found, "missing": missing, "python": sys.version.split()[0]}
if "torch" in found:
    import torch
    info["cuda_available"] = torch.cuda.is_available()
    info["cuda"] = torch.version.cuda
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
json.dump(info, open(sys.argv[1], "w"), indent=2)
print("modules found: " + ", ".join(f"{k} {v}" for k, v in found.items()))
print("modules missing: " + (", ".join(missing) if missing else "none"))
EOF
if [ $? -ne 0 ]; then
    echo "gpu_check: could not run $PY; set PYTHON=/path/to/python" >&2
    exit 2
fi
missing_list() {  # the named modules that are missing, comma-separated (empty when none)
    "$PY" -c "import json,sys; m=json.load(open('$OUT/imports.json'))['missing']; print(', '.join(n for n in sys.argv[1:] if n in m))" "$@"
}
if [ -n "$(missing_list torch)" ]; then
    echo "gpu_check: torch is not installed (pip install -r requirements.txt); nothing was checked." >&2
    exit 1
fi
if [ "$REHEARSAL" = 1 ]; then
    GPU="the CPU (REHEARSAL: tiny sizes, the CUDA tests skip; no figure here is a GPU result)"
elif [ "$("$PY" -c "import json; print(json.load(open('$OUT/imports.json'))['cuda_available'])")" != "True" ]; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): the CUDA checks were NOT run."
    echo "Run this script on a machine with an NVIDIA GPU. Imports: $OUT/imports.json"
    exit 0
else
    GPU=$("$PY" -c "import json; print(json.load(open('$OUT/imports.json'))['gpu'])")
fi
echo "gpu_check on $GPU; budget ${BUDGET}s; results in $OUT"
NEEDED=$(missing_list pytest yaml numpy tqdm)
if [ -n "$NEEDED" ]; then
    echo "gpu_check: missing $NEEDED: pip install -r requirements.txt" >&2
    exit 1
fi
DATA_MISSING=$(missing_list rawpy tifffile skimage)

# sizes: the paper's on a GPU; tiny in a rehearsal
if [ "$REHEARSAL" = 1 ]; then
    BENCH_SIZES=(--device cpu --patch 128 --full 96 128 --warmup 0 --iters 1 --set model.width=8)  # no --profile
    THROUGHPUT_SIZE=(--size 96 128 --device cpu)
    DEMO_EXTRA=(model.width=8 train.epochs=1 data.train.repeat=1 train.num_threads=1 data.num_workers=1
                data.synthetic.height=192 data.synthetic.width=288)
else
    BENCH_SIZES=(--warmup 2 --iters 5 --profile)
    THROUGHPUT_SIZE=(--size 1424 2128)
    DEMO_EXTRA=(train.num_threads=null data.num_workers=2)
fi
DEMO_SET=("data.data_path=$DEMO_DATA" train.test_at_end=false train.validate_at_start=false "${DEMO_EXTRA[@]}")

# --- the synthetic SID for the demo (CPU only; before anything is timed) ----------------------------
if [ -z "$DATA_MISSING" ]; then
    timeout "$(until_share 20)" "$PY" - "${DEMO_SET[@]}" > "$OUT/synthetic_sid.log" 2>&1 <<'EOF'
import sys
from cans.config import load_config
from cans.data import ensure_synthetic
ensure_synthetic(load_config("configs/demo.yaml", sys.argv[1:]))
EOF
    [ $? -eq 0 ] || DATA_MISSING="(the synthetic SID failed: $OUT/synthetic_sid.log)"
fi

# --- the benchmark of one model (steps 2 and 5) --------------------------------------------------------
benchmark() {  # model share
    local model=$1 lim t0 rc t note json="$OUT/benchmark_$1.json"
    lim=$(until_share "$2")
    if [ "$lim" -lt 30 ]; then
        record "benchmark $model" SKIP 0 "over the ${BUDGET}s budget (GPU_CHECK_BUDGET)"
        return
    fi
    t0=$(date +%s)
    # no mode starts in the last 40 % of the step's time (a compile mode needs that long)
    timeout "$lim" "$PY" scripts/benchmark.py -c "configs/$model/Sony.yaml" "${BENCH_SIZES[@]}" \
        --modes plain authors_flags fast bf16 bf16_triton triton_dwconv cudagraphs bf16_compile fast_triton all --budget $(( lim * 6 / 10 )) \
        --out "$json" > "$OUT/benchmark_$model.log" 2>&1
    rc=$?
    t=$(( $(date +%s) - t0 ))
    if [ ! -f "$json" ]; then
        record "benchmark $model" FAIL "$t" "exit $rc$( [ $rc = 124 ] && echo ' (time limit)'), no mode finished; see benchmark_$model.log"
        return
    fi
    note=$("$PY" - "$json" "$rc" <<'EOF'
import json, sys
r, rc = json.load(open(sys.argv[1])), sys.argv[2]
bad = [m["mode"] for m in r["results"] if "error" in m]
parts, skipped = [], []
for m in r["results"]:
    if "train_step_ms" in m:
        psnr = m.get("rgb_psnr_vs_plain")
        parts.append(f"{m['mode']} {m['train_step_ms']:.1f}/{m['infer_ms']:.1f} ms"
                     + ("" if psnr is None else f" {psnr:.0f}dB"))
    elif "skipped" in m:
        skipped.append(m["mode"])
notes = []
if rc == "124":
    notes.append("cut at the time limit after " + ", ".join(m["mode"] for m in r["results"]))
if bad:
    notes.append("errors: " + ", ".join(bad))
notes.append("train/infer: " + "; ".join(parts))
if skipped:
    notes.append("skipped: " + ", ".join(skipped))
ok = not bad and (rc == "0" or (rc == "124" and parts))
print(("PASS" if ok else "FAIL") + "\t" + "; ".join(notes))
EOF
)
    record "benchmark $model" "${note%%$'\t'*}" "$t" "${note#*$'\t'}"
}

# --- 2. benchmark CANS++ --------------------------------------------------------------------------
benchmark CANS_Plus 45

# --- 3. pytest -m cuda and the two demo runs, side by side (none of them is timed) ------------------
LIM=$(until_share 80)
t0=$(date +%s)
timeout "$LIM" "$PY" -m pytest -m cuda tests/ -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_cuda.xml" > "$OUT/pytest_cuda.log" 2>&1 &
PID_TEST=$!
if [ -z "$DATA_MISSING" ]; then
    timeout "$LIM" "$PY" train.py -c configs/demo.yaml --no-progress \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/demo_fast" train.fast=true > "$OUT/demo_fast.log" 2>&1 &
    PID_FAST=$!
    timeout "$LIM" "$PY" train.py -c configs/demo.yaml --no-progress \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/demo_eager" train.fast=false > "$OUT/demo_eager.log" 2>&1 &
    PID_EAGER=$!
fi
wait $PID_TEST
rc=$?
t=$(( $(date +%s) - t0 ))
counts=$(tail -n 3 "$OUT/pytest_cuda.log" | grep -E "passed|failed|skipped|error" | tail -n 1)
if [ $rc -eq 0 ]; then record "pytest -m cuda" PASS "$t" "$counts"
elif [ $rc -eq 124 ]; then record "pytest -m cuda" FAIL "$t" "time limit; see pytest_cuda.log"
else record "pytest -m cuda" FAIL "$t" "${counts:-exit $rc}; see pytest_cuda.log"; fi

if [ -z "$DATA_MISSING" ]; then
    wait $PID_FAST; rc_fast=$?
    wait $PID_EAGER; rc_eager=$?
    t=$(( $(date +%s) - t0 ))
    note=$("$PY" - "$OUT" "$rc_fast" "$rc_eager" <<'EOF'
import json, os, sys
out, rcs = sys.argv[1], sys.argv[2:]
vals = {}
for name, rc in zip(("fast", "eager"), rcs):
    path = os.path.join(out, f"demo_{name}", "train_summary.json")
    if rc != "0" or not os.path.isfile(path):
        print(f"FAIL\tdemo_{name} exit {rc}" + (" (time limit)" if rc == "124" else "") + f"; see demo_{name}.log")
        sys.exit()
    s = json.load(open(path))
    vals[name] = (s.get("final") or {}).get("psnr")
    vals[name + "_s"] = s.get("wall_s")
if vals["fast"] is None or vals["eager"] is None:
    print("FAIL\tno final validation PSNR in train_summary.json"); sys.exit()
d = abs(vals["fast"] - vals["eager"])
print(("PASS" if d <= 0.3 else "FAIL") + f"\tfinal PSNR fast {vals['fast']:.2f} / eager {vals['eager']:.2f} dB "
      f"(|diff| {d:.2f} <= 0.3); wall {vals['fast_s']} s / {vals['eager_s']} s")
EOF
)
    record "demo fast vs eager" "${note%%$'\t'*}" "$t" "${note#*$'\t'}"
else
    record "demo fast vs eager" SKIP 0 "missing: $DATA_MISSING"
fi

# --- 4. test.py --throughput ------------------------------------------------------------------------
LIM=$(until_share 88)
if [ "$LIM" -lt 20 ]; then
    record "test.py --throughput" SKIP 0 "over the ${BUDGET}s budget (GPU_CHECK_BUDGET)"
else
    t0=$(date +%s)
    timeout "$LIM" "$PY" test.py -c configs/CANS_Plus/Sony.yaml --throughput --random-weights "${THROUGHPUT_SIZE[@]}" \
        --out "$OUT/throughput" > "$OUT/throughput.log" 2>&1
    rc=$?
    t=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        record "test.py --throughput" PASS "$t" "$(grep -o '[0-9.]* ms/image mean' "$OUT/throughput.log" | head -1) (CANS++, ${THROUGHPUT_SIZE[1]}x${THROUGHPUT_SIZE[2]} packed)"
    else
        record "test.py --throughput" FAIL "$t" "exit $rc$( [ $rc = 124 ] && echo ' (time limit)'); see throughput.log"
    fi
fi

# --- 5. benchmark CANS ------------------------------------------------------------------------------
benchmark CANS 100

# --- summary ---------------------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - START ))
"$PY" - "$SUMMARY" "$OUT/summary.md" "$GPU" "$TOTAL" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
lines = [f"gpu_check on {sys.argv[3]}: {sys.argv[4]} s in all", "",
         "| check | result | seconds | details |", "|---|---|---:|---|"]
lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print("\n" + text)
EOF
if grep -q $'\tFAIL\t' "$SUMMARY"; then exit 1; fi
exit 0
