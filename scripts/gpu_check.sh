#!/usr/bin/env bash
# Prove the CUDA path on one GPU, with nothing downloaded:  bash scripts/gpu_check.sh OUTDIR
#
#   1. imports     which modules are missing (torch is required; rawpy, tifffile, scikit-image
#                  feed the synthetic SID and infer.py: checks that need a missing one are SKIP)
#   2. pytest      python -m pytest -m cuda tests/  (fast path vs float32 on the parity vectors,
#                  bf16/fp16 >= 45 dB, fp16 step with the grad scaler, DDP over NCCL, Triton
#                  kernel, infer.py on the GPU)
#   3. demo        configs/demo.yaml trained on CUDA with train.fast on and off (run side by side);
#                  PASS when the final validation PSNRs are within 0.3 dB
#   4. throughput  test.py --throughput --random-weights --size 1424 2128 (test.fast default)
#   5. benchmark   scripts/benchmark.py --modes all for CANS++ and CANS (paper sizes)
#
# Every log and JSON goes under OUTDIR; the last thing printed is the summary table
# (OUTDIR/summary.md). On a machine without a CUDA GPU it says so and exits 0.
# GPU_CHECK_BUDGET (seconds, default 360) bounds the whole run: each step has its own time
# limit, and a step that no longer fits is reported as SKIP. Exit status 1 when a check FAILs.
set -u
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/gpu_check.sh OUTDIR" >&2
    exit 2
fi
OUT=$1
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python}
BUDGET=${GPU_CHECK_BUDGET:-360}
START=$(date +%s)
SUMMARY="$OUT/summary.tsv"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1

record() {  # name status seconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"
}

remaining() {
    echo $(( BUDGET - ($(date +%s) - START) ))
}

limit() {  # the time limit of a step: min(cap, what is left of the budget)
    local left
    left=$(remaining)
    if [ "$left" -lt 1 ]; then left=1; fi  # timeout 0 would mean no limit at all
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
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
missing() {  # true when any of the named modules is missing
    "$PY" -c "import json,sys; m=json.load(open('$OUT/imports.json'))['missing']; sys.exit(0 if set(sys.argv[1:]) & set(m) else 1)" "$@"
}
missing_list() {
    "$PY" -c "import json,sys; m=json.load(open('$OUT/imports.json'))['missing']; print(', '.join(n for n in sys.argv[1:] if n in m))" "$@"
}
if missing torch; then
    echo "gpu_check: torch is not installed (pip install -r requirements.txt); nothing was checked." >&2
    exit 1
fi
if [ "$("$PY" -c "import json; print(json.load(open('$OUT/imports.json'))['cuda_available'])")" != "True" ]; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): the CUDA checks were NOT run."
    echo "Run this script on a machine with an NVIDIA GPU. Imports: $OUT/imports.json"
    exit 0
fi
GPU=$("$PY" -c "import json; print(json.load(open('$OUT/imports.json'))['gpu'])")
echo "gpu_check on $GPU; budget ${BUDGET}s; results in $OUT"
if missing pytest yaml numpy tqdm; then
    echo "gpu_check: missing $(missing_list pytest yaml numpy tqdm): pip install -r requirements.txt pytest" >&2
    exit 1
fi
DATA_MISSING=$(missing_list rawpy tifffile skimage)

# --- 2 + 3. pytest -m cuda and the two demo runs, side by side (none of them is timed) --------------
DEMO_DATA="$OUT/synthetic_sid"
DEMO_SET=("data.data_path=$DEMO_DATA" train.test_at_end=false train.validate_at_start=false
          train.num_threads=null data.num_workers=2)
if [ -z "$DATA_MISSING" ]; then
    timeout "$(limit 60)" "$PY" - "$DEMO_DATA" > "$OUT/synthetic_sid.log" 2>&1 <<'EOF'
import sys
from cans.config import load_config
from cans.data import ensure_synthetic
cfg = load_config("configs/demo.yaml", [f"data.data_path={sys.argv[1]}"])
ensure_synthetic(cfg)
EOF
    [ $? -eq 0 ] || DATA_MISSING="(the synthetic SID failed: $OUT/synthetic_sid.log)"
fi

t0=$(date +%s)
timeout "$(limit 200)" "$PY" -m pytest -m cuda tests/ -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_cuda.xml" > "$OUT/pytest_cuda.log" 2>&1 &
PID_TEST=$!
if [ -z "$DATA_MISSING" ]; then
    timeout "$(limit 200)" "$PY" train.py -c configs/demo.yaml --no-progress \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/demo_fast" train.fast=true > "$OUT/demo_fast.log" 2>&1 &
    PID_FAST=$!
    timeout "$(limit 200)" "$PY" train.py -c configs/demo.yaml --no-progress \
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
run_step() {  # name cap log command...
    local name=$1 cap=$2 log=$3
    shift 3
    local lim
    lim=$(limit "$cap")
    if [ "$lim" -lt 20 ]; then
        record "$name" SKIP 0 "over the ${BUDGET}s budget (GPU_CHECK_BUDGET)"
        return
    fi
    local t0 rc
    t0=$(date +%s)
    timeout "$lim" "$@" > "$OUT/$log" 2>&1
    rc=$?
    STEP_T=$(( $(date +%s) - t0 ))
    STEP_RC=$rc
}

STEP_RC=skip
run_step "test.py --throughput" 90 throughput.log "$PY" test.py -c configs/CANS_Plus/Sony.yaml --throughput \
    --random-weights --size 1424 2128 --out "$OUT/throughput"
if [ "$STEP_RC" = 0 ]; then
    record "test.py --throughput" PASS "$STEP_T" "$(grep -o '[0-9.]* ms/image mean' "$OUT/throughput.log" | head -1) (CANS++, 1424x2128 packed)"
elif [ "$STEP_RC" != skip ]; then
    record "test.py --throughput" FAIL "$STEP_T" "exit $STEP_RC; see throughput.log"
fi

# --- 5. benchmark, every mode, CANS++ then CANS -----------------------------------------------------
for model in CANS_Plus CANS; do
    STEP_RC=skip
    run_step "benchmark $model" 150 "benchmark_$model.log" "$PY" scripts/benchmark.py -c "configs/$model/Sony.yaml" \
        --modes all --warmup 2 --iters 5 --out "$OUT/benchmark_$model.json"
    if [ "$STEP_RC" = 0 ]; then
        note=$("$PY" - "$OUT/benchmark_$model.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [m["mode"] for m in r["results"] if "error" in m]
parts = []
for m in r["results"]:
    if "train_step_ms" in m:
        psnr = m.get("rgb_psnr_vs_plain")
        parts.append(f"{m['mode']} {m['train_step_ms']:.1f}/{m['infer_ms']:.1f} ms"
                     + (f" {psnr:.0f}dB" if psnr is not None else ""))
print(("FAIL" if bad else "PASS") + "\t" + ("errors: " + ", ".join(bad) + "; " if bad else "")
      + "train/infer: " + "; ".join(parts))
EOF
)
        record "benchmark $model" "${note%%$'\t'*}" "$STEP_T" "${note#*$'\t'}"
    elif [ "$STEP_RC" != skip ]; then
        record "benchmark $model" FAIL "$STEP_T" "exit $STEP_RC$( [ "$STEP_RC" = 124 ] && echo ' (time limit)'); see benchmark_$model.log"
    fi
done

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
