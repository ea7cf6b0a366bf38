#!/usr/bin/env bash
# Settings scan for the MovieLens-1M HAMUR-MLP paper-mode config on a lent GPU machine: four
# in-process scans (benchmarks/ml1m_scan.py, no Ray) share the GPU; every setting is applied on top
# of batch 2048 (the 2-worker run's global batch). Carry datasets/ml1m.
#   bash benchmarks/gpu_scan.sh single   # one change at a time (20 epochs, patience 3)
#   bash benchmarks/gpu_scan.sh combos   # lr 2e-3 with the best changes, several seeds (12 epochs, patience 2)
set -uo pipefail
mode=${1:-single}
out=${OUT:-/tmp/gpu-scan}; mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
scan() { local name=$1; shift; local sets=(); for s in "$@"; do sets+=(--set "$BASE $s"); done
  timeout ${SCAN_S:-480} python3 benchmarks/ml1m_scan.py --data datasets/ml1m --epochs "$EPOCHS" --patience "$PATIENCE" \
    "${sets[@]}" > "$out/$name.txt" 2>&1 & }
if [ "$mode" = single ]; then
  BASE="data.batch_size=2048" EPOCHS=20 PATIENCE=3
  scan seeds "train.seed=0" "train.seed=1" "train.seed=2" "train.seed=3" "train.seed=4" "data.batch_size=1024" \
       "train.seed=5" "train.seed=6"
  scan arch "model.hidden_dims=[512,256]" "model.hidden_dims=[256,128,64]" "model.hamur.insert_after=[0,1]" \
       "model.hamur.bottleneck=64" "model.hamur.rank=32 model.hamur.hyper_hidden=[128]" "model.hidden_dims=[512,256,128]" \
       "model.hidden_dims=[1024,512]" "model.hidden_dims=[512,256] model.dropout=0.3"
  scan reg "model.dropout=0.1" "model.dropout=0.3" "model.dropout=0.4" "train.lr=0.002" "train.lr=0.0005" \
       "model.embed_dim=48" "model.embed_init_std=0.05" "train.weight_decay=3.0e-5 model.dropout=0.3"
  scan mix "data.batch_size=4096 train.lr=0.002" "train.lr_decay=0.9" "model.embed_dim=64 model.dropout=0.3" \
       "model.hamur.mode=reference" "data.batch_size=512 train.lr=0.0005" "train.lr=0.002 train.lr_decay=0.8" \
       "model.embed_dim=16" "model.hamur.enabled=false"
else
  BASE="data.batch_size=2048 train.lr=0.002" EPOCHS=12 PATIENCE=2
  wide="model.hidden_dims=[512,256] model.dropout=0.3" k32="model.hamur.rank=32 model.hamur.hyper_hidden=[128]"
  scan c1 "$wide" "$wide train.seed=1" "$wide train.seed=2"
  scan c2 "$k32" "$k32 train.seed=1" "$k32 train.seed=2"
  scan c3 "$wide $k32" "$wide $k32 train.seed=1" "model.embed_dim=48 model.dropout=0.3 model.hidden_dims=[512,256]"
  scan c4 "train.seed=1" "train.seed=2" "model.dropout=0.1 model.embed_dim=48"
fi
wait
for f in "$out"/*.txt; do echo "== $(basename "$f")"; cat "$f"; done
