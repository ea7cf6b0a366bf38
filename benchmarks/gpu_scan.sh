#!/usr/bin/env bash
# Settings scan for the MovieLens-1M HAMUR-MLP paper-mode config on a lent GPU machine: four
# in-process scans (benchmarks/ml1m_scan.py, no Ray) share the GPU; batch 2048 = the 2-worker run's
# global batch. Carry datasets/ml1m.   bash benchmarks/gpu_scan.sh
set -uo pipefail
out=${OUT:-/tmp/gpu-scan}; mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
B="data.batch_size=2048"
scan() { local name=$1; shift; local sets=(); for s in "$@"; do sets+=(--set "$B $s"); done
  timeout ${SCAN_S:-480} python3 benchmarks/ml1m_scan.py --data datasets/ml1m --epochs 20 --patience 3 "${sets[@]}" \
    > "$out/$name.txt" 2>&1 & }
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
wait
for f in "$out"/*.txt; do echo "== $(basename "$f")"; cat "$f"; done
