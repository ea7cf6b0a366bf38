#!/usr/bin/env bash
# The whole GPU check as one script for a lent H100/H200 (the device tool runs it in a copy of the
# tree). Carry: .raycarry (made by ../shared/tools/make-ray-carry.sh .raycarry) and datasets/ml1m.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
bash .raycarry/install.sh || exit 1
export PYTHONPATH=/tmp/raysite:$PWD:${PYTHONPATH:-} RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== model step (forward+backward), CUDA: paper vs reference vs naive"
timeout 200 python3 benchmarks/model_step.py --device cuda --precision fp32,bf16 --steps 10 --warmup 3 \
    --json "$out/model_step.json" 2>&1 | tee "$out/model_step.txt"
echo "== Ray Data + Ray Train on one GPU, MovieLens-1M reference config"
timeout 300 python3 benchmarks/gpu_train.py --data datasets/ml1m --epochs 4 2>&1 \
    | grep -v "Reporting training result\|PlacementGroupCleaner" | tee "$out/gpu_train.txt"
echo "== MovieLens-1M settings scan, in-process on the GPU (HAMUR-MLP paper mode unless the set says otherwise)"
timeout 240 python3 benchmarks/ml1m_scan.py --data datasets/ml1m --epochs 20 --patience 3 \
    --set "data.batch_size=2048 train.lr=0.001" \
    --set "data.batch_size=2048 train.lr=0.001 model.embed_init_std=0.01" \
    --set "data.batch_size=1024 train.lr=0.001 model.embed_init_std=0.01" \
    --set "data.batch_size=4096 train.lr=0.002 model.embed_init_std=0.01" \
    --set "data.batch_size=2048 train.lr=0.001 model.embed_init_std=0.01 train.weight_decay=0" \
    --set "data.batch_size=2048 train.lr=0.001 model.embed_init_std=0.01 model.hamur.mode=reference" \
    --set "data.batch_size=2048 train.lr=0.001 model.embed_init_std=0.01 model.hamur.enabled=false" \
    --set "data.batch_size=2048 train.lr=0.0005 model.embed_init_std=0.05 model.embed_dim=32" \
    2>&1 | tee "$out/ml1m_scan.txt"
