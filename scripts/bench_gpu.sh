#!/usr/bin/env bash
# Every GPU row of docs/benchmarks/gpu.md in one go: the CUDA tests, then the CUDA path (bf16
# autocast, the device synchronised around every timer, torch.cuda.max_memory_allocated for memory)
# of bench_attention, bench_train (the bound, then the sweep), bench_embed and bench_generate.
# About 8 minutes on one H200 at most: each step has its own time limit (560 s together), and a
# failed step does not stop the others (the exit status says whether any failed).
#
#   scripts/bench_gpu.sh [OUTDIR]     # OUTDIR: default $OUT if set, else outputs/gpu
#
# Writes to OUTDIR (7 files): test_cuda.xml (JUnit), attention.md, train.md (two blocks: bound and sweep),
# embed.md, generate.md, generate.json, bench_gpu.log (every step's output and time).
# Python: $PYTHON, else .venv/bin/python where it exists, else python3 (the GPU machine's torch).
# Proteome for bench_embed: $FASTA, else ../shared/data/UP000000625_83333.fasta.gz, else
# outputs/gpu_input/UP000000625_83333.fasta.gz (copy it there and carry outputs/gpu_input to a
# machine that has no ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-${OUT:-outputs/gpu}}"
mkdir -p "$DIR"
LOG="$DIR/bench_gpu.log"
: >"$LOG"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
NAME=UP000000625_83333.fasta.gz
FASTA="${FASTA:-}"
for candidate in "../shared/data/$NAME" "outputs/gpu_input/$NAME"; do
    [[ -z "$FASTA" && -f "$candidate" ]] && FASTA="$candidate"
done

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >>"$LOG" 2>&1; then
    echo "bench_gpu.sh: $PY sees no CUDA device (torch.cuda.is_available() is False); nothing measured" | tee -a "$LOG" >&2
    exit 2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name())' 2>&1 | tee -a "$LOG"

FAILED=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, output appended to the log
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
    ((rc == 0)) || FAILED+=("$name (exit $rc)")
}

step test_cuda 60 "$PY" -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py --junit-xml="$DIR/test_cuda.xml"

IMPLS=favor,favor_causal,favor_relu,favor_relu_causal,sdpa,sdpa_causal
if "$PY" -c 'import performer_pytorch' 2>/dev/null; then IMPLS="$IMPLS,performer,performer_causal"; fi
step attention 90 "$PY" scripts/bench_attention.py --device cuda --impls "$IMPLS" --repeats 3 --timed 5 \
    --lengths 1024,4096,8192,16384,32768,65536,131072 --time-cap-s 30 --mem-cap-gib 100 \
    --out-md "$DIR/attention.md"

step train_bound 90 "$PY" scripts/bench_train.py --bound --device cuda --lengths 1024,8192,32768 \
    --rounds 10 --long-rounds 10 --ckpt-from 0 --mem-cap-gib 120 --budget-s 70 --out-md "$DIR/train.md"

step train_sweep 170 "$PY" scripts/bench_train.py --device cuda --lengths 1024,8192,32768 --repeats 3 \
    --single-step-length 1000000 --mem-cap-gib 120 --no-probe --budget-s 130 --out-md "$DIR/train.md"

if [[ -n "$FASTA" ]]; then
    step embed 60 "$PY" scripts/bench_embed.py --device cuda --fasta "$FASTA" --limit 0 \
        --long-lengths 8192,32768 --out-md "$DIR/embed.md"
else
    echo "=== embed: no $NAME (set FASTA, or copy it to outputs/gpu_input/ and carry that folder)" | tee -a "$LOG"
    FAILED+=("embed (no proteome)")
fi

step generate 90 "$PY" scripts/bench_generate.py --device cuda --out "$DIR/generate.md"

if ((${#FAILED[@]})); then
    echo "bench_gpu.sh: failed: ${FAILED[*]}; see $LOG" | tee -a "$LOG" >&2
    exit 1
fi
echo "bench_gpu.sh: all steps done; results in $DIR" | tee -a "$LOG"
