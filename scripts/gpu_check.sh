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
#      demo        configs/demo.yaml trained on CUDA with train.fast on, and twice with it off,
#                  side by side with pytest (none of them is timed); PASS when the fast run's final
#                  validation PSNR is within max(0.5 dB, 3 x the two eager runs' difference) of
#                  the first eager run's: the run-to-run spread of eager training (the summation
#                  order of the GPU's atomic additions) calibrates the check
#   4. resume      two short CUDA runs with train.fast on (fused AdamW, compiled): one resumed from
#                  a checkpoint written on the CPU (made before anything is timed), one from the
#                  eager demo's (train.fast=false) checkpoint; PASS when each finishes its epoch
#                  without a skipped step and its final PSNR is at most 1 dB below the checkpoint's
#      infer       scripts/infer.py on three demo photos with a compiler that fails (simulated):
#                  PASS when it is tried once and the run ends with the one-line hint, exit 1
#   5. throughput  test.py --throughput --random-weights --size 1424 2128 (test.fast default)
#   6. benchmark   the same for CANS
#
# Every log and JSON goes under OUTDIR; the last thing printed is the summary table
# (OUTDIR/summary.md). On a machine without a CUDA GPU it says so and exits 0. Exit status 1
# when a check FAILs.
#
# Environment:
#   GPU_CHECK_BUDGET     seconds for the whole run (default 720). Step k must end by a fixed share
#                        of it (the demo data and the CPU checkpoint 20 %, benchmark CANS++ 35 %,
#                        pytest + demo 65 %, resume + infer 78 %, throughput 87 %, benchmark CANS
#                        100 %), so time a step leaves unused goes to the next; a benchmark cut short
#                        keeps the modes it measured, and a step with no time left is SKIP.
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
BUDGET=${GPU_CHECK_BUDGET:-720}
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
    INFER_DEVICE=(--device cpu)
    DEMO_EXTRA=(model.width=8 train.epochs=1 data.train.repeat=1 train.num_threads=1 data.num_workers=1
                data.synthetic.height=192 data.synthetic.width=288)
else
    BENCH_SIZES=(--warmup 2 --iters 5 --profile)
    THROUGHPUT_SIZE=(--size 1424 2128)
    INFER_DEVICE=()
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
# a short demo run on the CPU (no GPU visible): step 4 resumes its checkpoint on CUDA
CPU_CKPT_FAILED=""
if [ -z "$DATA_MISSING" ]; then
    CUDA_VISIBLE_DEVICES="" timeout "$(until_share 20)" "$PY" train.py -c configs/demo.yaml --no-progress \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/ckpt_cpu" train.epochs=1 data.train.repeat=1 \
        > "$OUT/ckpt_cpu.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || CPU_CKPT_FAILED="the CPU run that writes the checkpoint failed (exit $rc); see ckpt_cpu.log"
fi

# --- the benchmark of one model (steps 2 and 6) --------------------------------------------------------
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
benchmark CANS_Plus 35

# --- 3. pytest -m cuda and the three demo runs, side by side (none of them is timed) ----------------
LIM=$(until_share 65)
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
    timeout "$LIM" "$PY" train.py -c configs/demo.yaml --no-progress \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/demo_eager2" train.fast=false > "$OUT/demo_eager2.log" 2>&1 &
    PID_EAGER2=$!
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
    wait $PID_EAGER2; rc_eager2=$?
    t=$(( $(date +%s) - t0 ))
    note=$("$PY" - "$OUT" "$rc_fast" "$rc_eager" "$rc_eager2" <<'EOF'
import json, math, os, sys
out, rcs = sys.argv[1], sys.argv[2:]
vals = {}
for name, rc in zip(("fast", "eager", "eager2"), rcs):
    path = os.path.join(out, f"demo_{name}", "train_summary.json")
    if rc != "0" or not os.path.isfile(path):
        print(f"FAIL\tdemo_{name} exit {rc}" + (" (time limit)" if rc == "124" else "") + f"; see demo_{name}.log")
        sys.exit()
    s = json.load(open(path))
    vals[name] = (s.get("final") or {}).get("psnr")
    vals[name + "_s"] = s.get("wall_s")
if any(vals[n] is None or not math.isfinite(vals[n]) for n in ("fast", "eager", "eager2")):
    print("FAIL\tno finite final validation PSNR in a train_summary.json"); sys.exit()
spread = abs(vals["eager"] - vals["eager2"])   # eager run to run: the order of the GPU's atomic sums
tol = max(0.5, 3 * spread)
d = abs(vals["fast"] - vals["eager"])
print(("PASS" if d <= tol else "FAIL") + f"\tfinal PSNR fast {vals['fast']:.2f} / eager {vals['eager']:.2f} and "
      f"{vals['eager2']:.2f} dB (|diff| {d:.2f} <= max(0.5, 3 x eager spread {spread:.2f}) = {tol:.2f}); "
      f"wall {vals['fast_s']} s / {vals['eager_s']} s")
EOF
)
    record "demo fast vs eager" "${note%%$'\t'*}" "$t" "${note#*$'\t'}"
else
    record "demo fast vs eager" SKIP 0 "missing: $DATA_MISSING"
fi

# --- 4. resume on CUDA from a CPU checkpoint and from a train.fast=false one; infer.py, failing compiler
resume_check() {  # FROM TO [KEY=VALUE ...]: resume OUT/FROM's last.pth for one more epoch into OUT/TO
    local from=$1 to=$2 rc done_epochs
    shift 2
    if [ ! -f "$OUT/$from/checkpoints/last.pth" ] || [ ! -f "$OUT/$from/train_summary.json" ]; then
        printf 'FAIL\tno checkpoint to resume: %s did not finish; see %s.log\n' "$from" "$from"
        return
    fi
    done_epochs=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['epochs_done'])" \
        "$OUT/$from/train_summary.json")
    # a copy outside the run folder: a resume writes its checkpoint's own run folder, and this one branches off
    cp "$OUT/$from/checkpoints/last.pth" "$OUT/$from.last.pth"
    timeout "$LIM" "$PY" train.py -c configs/demo.yaml --no-progress --resume "$OUT/$from.last.pth" \
        --set "${DEMO_SET[@]}" "output_dir=$OUT/$to" "train.epochs=$(( done_epochs + 1 ))" train.fast=true "$@" \
        > "$OUT/$to.log" 2>&1
    rc=$?
    "$PY" - "$OUT" "$from" "$to" "$rc" <<'EOF'
import json, math, os, sys
out, src, dst, rc = sys.argv[1:]
if rc != "0" or not os.path.isfile(os.path.join(out, dst, "train_summary.json")):
    print(f"FAIL\texit {rc}" + (" (time limit)" if rc == "124" else "") + f"; see {dst}.log"); sys.exit()
a, b = (json.load(open(os.path.join(out, d, "train_summary.json"))) for d in (src, dst))
pa, pb = ((s.get("final") or {}).get("psnr") for s in (a, b))
skipped = b["nonfinite_steps"] - a["nonfinite_steps"]
resumed = "resumed from" in open(os.path.join(out, dst + ".log")).read()
ok = (resumed and b["epochs_done"] == a["epochs_done"] + 1 and b["steps"] > a["steps"] and skipped == 0
      and pa is not None and pb is not None and math.isfinite(pb) and pb >= pa - 1.0)
fmt = lambda p: "none" if p is None else f"{p:.2f}"
print(("PASS" if ok else "FAIL") + f"\tepochs {a['epochs_done']} -> {b['epochs_done']}, steps {a['steps']} -> "
      f"{b['steps']}, {skipped} skipped; final PSNR {fmt(pa)} -> {fmt(pb)} dB (at most 1 dB lower)"
      + ("" if resumed else "; no 'resumed from' in the log") + f"; see {dst}.log")
EOF
}

infer_failure_check() {  # infer.py on three demo photos, the demo's fast weights, a compiler that fails
    local files rc
    files=$(ls "$DEMO_DATA"/Sony/short/*.ARW 2>/dev/null | head -n 3)
    if [ ! -f "$OUT/demo_fast/checkpoints/last.pth" ] || [ -z "$files" ]; then
        printf 'FAIL\tno demo_fast checkpoint or no demo photos; see demo_fast.log\n'
        return
    fi
    # shellcheck disable=SC2086  # the three paths (no spaces: the demo's own names under DEMO_DATA)
    timeout "$LIM" "$PY" - -c configs/demo.yaml --checkpoint "$OUT/demo_fast/checkpoints/last.pth" \
        --out "$OUT/infer_compile_failure" --no-progress ${INFER_DEVICE[@]+"${INFER_DEVICE[@]}"} --set "${DEMO_SET[@]}" $files \
        > "$OUT/infer_compile_failure.log" 2> "$OUT/infer_compile_failure.err" <<'EOF'
import importlib.util, sys
import torch
import cans.engine.fastpath as fastpath
from cans.train.prior import unwrap_model

attempts = []

def failing_compiler(gm, example_inputs):   # what a broken inductor / Triton install raises
    attempts.append(1)
    raise RuntimeError("simulated compiler failure (gpu_check)")

original = fastpath.fast_model_for_test

def fast_model_for_test(cfg, model, device, log=print):   # test.fast as usual, then the failing compiler
    model, plan = original(cfg, model, device, log)
    return torch.compile(unwrap_model(model), backend=failing_compiler), plan

fastpath.fast_model_for_test = fast_model_for_test
spec = importlib.util.spec_from_file_location("infer_script", "scripts/infer.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
status = script.main(sys.argv[1:])
print(f"compile attempts: {len(attempts)}; exit status {status}")
sys.exit(status)
EOF
    rc=$?
    "$PY" - "$OUT" "$rc" <<'EOF'
import os, re, sys
out, rc = sys.argv[1:]
err = open(os.path.join(out, "infer_compile_failure.err")).read()
m = re.search(r"compile attempts: (\d+)", open(os.path.join(out, "infer_compile_failure.log")).read())
attempts = int(m.group(1)) if m else None
hints = err.count("torch.compile failed")
ok = rc == "1" and attempts == 1 and hints == 1 and "test.fast=false" in err and "Traceback" not in err
print(("PASS" if ok else "FAIL") + f"\texit {rc}, {attempts} compile attempt(s) for 3 photos, the hint shown "
      f"{hints} time(s); see infer_compile_failure.err")
EOF
}

STEP4=("resume from a CPU checkpoint" "resume from a fast=false checkpoint" "infer.py compiler failure")
LIM=$(until_share 78)
if [ -n "$DATA_MISSING" ]; then
    for check in "${STEP4[@]}"; do record "$check" SKIP 0 "missing: $DATA_MISSING"; done
elif [ "$LIM" -lt 20 ]; then
    for check in "${STEP4[@]}"; do record "$check" SKIP 0 "over the ${BUDGET}s budget (GPU_CHECK_BUDGET)"; done
else
    t0=$(date +%s)
    if [ -n "$CPU_CKPT_FAILED" ]; then
        printf 'FAIL\t%s\n' "$CPU_CKPT_FAILED" > "$OUT/resume_from_cpu.result"
    else  # the CPU run's settings (one epoch of 15 steps), one more epoch on CUDA
        resume_check ckpt_cpu resume_from_cpu data.train.repeat=1 > "$OUT/resume_from_cpu.result" &
    fi
    resume_check demo_eager resume_from_eager > "$OUT/resume_from_eager.result" &
    infer_failure_check > "$OUT/infer_compile_failure.result"
    wait
    t=$(( $(date +%s) - t0 ))
    for run in resume_from_cpu resume_from_eager infer_compile_failure; do
        result=$(tail -n 1 "$OUT/$run.result" 2>/dev/null)
        case $run in
            resume_from_cpu) check=${STEP4[0]} ;;
            resume_from_eager) check=${STEP4[1]} ;;
            *) check=${STEP4[2]} ;;
        esac
        case $result in
            PASS$'\t'*|FAIL$'\t'*) record "$check" "${result%%$'\t'*}" "$t" "${result#*$'\t'}" ;;
            *) record "$check" FAIL "$t" "no result; see $run.log" ;;
        esac
    done
fi

# --- 5. test.py --throughput ------------------------------------------------------------------------
LIM=$(until_share 87)
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

# --- 6. benchmark CANS ------------------------------------------------------------------------------
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
