#!/usr/bin/env bash
# GPU checks in one go (at most 15 minutes; its parts took about 5 together on an H100):
# the CUDA tests, avdiar vs pyannote.audio on the GPU, the speed paths against the plain
# path, profiles of inference and of the step, the demo on CUDA, and the training loop's
# throughput on files (bf16) and in memory (float32 / bf16 / fp16).
#
#   bash bench/gpu_check.sh [OUT]     # OUT: where logs and reports go (default bench/out/gpu)
#   PARTS="cuda-tests vs-pyannote demo" bash bench/gpu_check.sh OUT   # only these parts
#
# Parts: cuda-tests vs-pyannote speed-paths profile-infer profile-off profile-bf16 demo
# train-loop-files train-loop-off train-loop-bf16 train-loop-fp16 (PARTS empty or unset: all).
# Needs a python3 with torch (CUDA), avdiar's requirements and pyannote.audio 4.0.7 (for
# the comparison). Where pip cannot reach an index, put wheels of the missing packages in
# .whl/ (see bench/README.md): they are installed into /tmp/site first.
# Every part has its own time limit, so one slow part does not stop the others.
set -u
OUT=${1:-${OUT:-bench/out/gpu}}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
exec > >(tee -a "$LOG") 2>&1

PARTS=${PARTS:-}
part() {  # part NAME SECONDS COMMAND...: run with a time limit, say how it ended
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    if [[ -n $PARTS && " $PARTS " != *" $name "* ]]; then return 0; fi
    echo "=== $name (limit $limit s): $*"
    timeout "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - started)) s"
}

source bench/gpu_env.sh
python3 -c "import pyannote.audio; print('pyannote.audio', pyannote.audio.__version__)"

part cuda-tests 75 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    "tests/test_train_loop.py::test_resume_follows_the_uninterrupted_trajectory"

part vs-pyannote 120 python3 -m bench.vs_pyannote --device cuda --threads 8 --repeats 10 \
    --warmup 3 --infer-minutes 30 --infer-repeats 5 --plain --workers -1 \
    --out "$OUT/vs_pyannote_cuda.md"

part speed-paths 90 python3 -m bench.speed_paths --device cuda --threads 8 --minutes 10 \
    --repeats 5

part profile-infer 60 python3 -m bench.profile --part infer --device cuda --threads 8 \
    --minutes 10

for amp in off bf16; do
    part "profile-$amp" 60 python3 -m bench.profile --part step --device cuda --amp "$amp"
done

part demo 160 python3 run.py demo --out /tmp/avdiar_demo_gpu --device cuda --parallel 4
if [[ -d /tmp/avdiar_demo_gpu ]]; then
    cp /tmp/avdiar_demo_gpu/comparison.md "$OUT/demo_comparison.md" 2>/dev/null
    tail -n 3 /tmp/avdiar_demo_gpu/runs/*.log 2>/dev/null | tail -n 40
fi

part train-loop-files 120 python3 -m bench.train --device cuda --amp bf16 --steps 20 \
    --workers 8 --out "$OUT/train_files_bf16.json"

for amp in off bf16 fp16; do
    part "train-loop-$amp" 40 python3 -m bench.train --device cuda --toy --amp "$amp" \
        --steps 10 --workers 0 --out "$OUT/train_$amp.json"
done
sleep 2  # let tee write the last lines
