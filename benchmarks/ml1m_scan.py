"""In-process scan of training settings on MovieLens-1M (no Ray): for each override set, train with
early stopping on validation AUC and print best val AUC, its epoch and the test AUC there.

A quick way to pick settings before a full distributed run; fast on a GPU (tensors stay on device).

    python benchmarks/ml1m_scan.py --data datasets/ml1m --epochs 15 \
        --set "train.lr=0.001" --set "train.lr=0.002 model.embed_init_std=0.01"
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc

from hamur_dist.config import load_experiment
from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.reader import read_split
from hamur_dist.model import build_model

REPO = Path(__file__).resolve().parents[1]


def tensors(root, manifest, split, device):
    cols = read_split(root, split)
    sparse = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.sparse], 1)
    dense = torch.stack([torch.from_numpy(cols[f.name]) for f in manifest.dense], 1)
    return [t.to(device) for t in (sparse, dense, torch.from_numpy(cols[manifest.domain.column]),
                                   torch.from_numpy(cols[manifest.label]))]


@torch.no_grad()
def auc(model, data, bs=65536) -> float:
    model.eval()
    probs = torch.cat([torch.sigmoid(model(data[0][i:i + bs], data[1][i:i + bs], data[2][i:i + bs]).float())
                       for i in range(0, len(data[3]), bs)])
    return float(binary_auroc(probs, data[3].long()))


def run(cfg, manifest, train, val, test, epochs, patience, device, fixed_order=False, verbose=False):
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, manifest.schema).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    bs, n = cfg.data.batch_size, len(train[3])
    best, best_epoch, best_test, waited = -1.0, -1, None, 0
    for epoch in range(epochs):
        model.train()
        for group in opt.param_groups:
            group["lr"] = cfg.train.lr * cfg.train.lr_decay ** epoch
        if epoch == 0 or not fixed_order:   # fixed_order: the same batches every epoch
            perm = torch.randperm(n, device=device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.binary_cross_entropy_with_logits(model(train[0][idx], train[1][idx], train[2][idx]), train[3][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        v = auc(model, val)
        if verbose:
            print(f"  epoch {epoch}: val AUC {v:.4f}", flush=True)
        if v > best:
            best, best_epoch, best_test, waited = v, epoch, auc(model, test), 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best, best_epoch, best_test


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO / "datasets" / "ml1m"))
    p.add_argument("--config", default=str(REPO / "configs" / "movielens1m_hamur_mlp.yaml"))
    p.add_argument("--set", action="append", default=[], help="space-separated overrides (repeatable)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--fixed-order", action="store_true", help="draw the batch order once, reuse it every epoch")
    p.add_argument("--verbose", action="store_true", help="print every epoch's val AUC")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    manifest = load_manifest(args.data)
    train, val, test = (tensors(args.data, manifest, s, args.device) for s in ("train", "val", "test"))
    print(f"{'overrides':<70} {'best val AUC':>12} {'epoch':>5} {'test AUC':>9} {'secs':>6}")
    for overrides in args.set or [""]:
        cfg = load_experiment(args.config, overrides.split())
        start = time.perf_counter()
        best, epoch, test_auc = run(cfg, manifest, train, val, test, args.epochs, args.patience, args.device,
                                      args.fixed_order, args.verbose)
        print(f"{overrides:<70} {best:>12.4f} {epoch:>5} {test_auc:>9.4f} {time.perf_counter() - start:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()
