#!/usr/bin/env bash
# The fusion sweep (bench/fusion_sweep.py) on a GPU: the demo's comparison over many seeds,
# with and without the co-attention's learned locality, and 600 instead of 150
# fine-tuning steps, many runs at once.
#
#   bash bench/gpu_sweep.sh [OUT] [SEEDS] [SECONDS]   # defaults: bench/out/gpu, 0-9, 400
#
# Runs go to /tmp/avdiar_sweep; the table (sweep.md) and the logs are copied to OUT. The
# sweep stops after SECONDS; the table then covers the seeds whose runs all finished.
set -u
OUT=${1:-bench/out/gpu}
SEEDS=${2:-0-9}
LIMIT=${3:-400}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
source bench/gpu_env.sh
# VARIANTS: bench.fusion_sweep --variant values, separated by ";" (default below)
VARIANTS=${VARIANTS:-"audio=0;late=6;early=7;hybrid=8;late-nolocal=6:--no-learned-locality;\
early-nolocal=7:--no-learned-locality;hybrid-nolocal=8:--no-learned-locality;\
audio-600=0:--max-steps 600;late-600=6:--max-steps 600;early-600=7:--max-steps 600;\
hybrid-600=8:--max-steps 600"}
SWEEP=(python3 -m bench.fusion_sweep --out /tmp/avdiar_sweep --seeds "$SEEDS" --device cuda
       --parallel "$(( $(nproc) - 2 ))")
IFS=';' read -ra LIST <<< "$VARIANTS"
for variant in "${LIST[@]}"; do SWEEP+=(--variant "$variant"); done
timeout "$LIMIT" "${SWEEP[@]}" > "$OUT/sweep.log" 2>&1
echo "sweep: exit $?"
"${SWEEP[@]}" --table-only
cp /tmp/avdiar_sweep/sweep.md "$OUT/sweep.md" 2>/dev/null
tar czf "$OUT/sweep_logs.tgz" -C /tmp/avdiar_sweep runs 2>/dev/null
tail -n 5 "$OUT/sweep.log"
