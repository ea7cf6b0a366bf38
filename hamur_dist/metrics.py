"""Per-domain CTR metrics computed on *all* predictions (no per-worker averaging), and their table.

Used by training (validation and test) and by offline evaluation alike.

Workers collect (probability, label, domain[, user]) for their share of a split;
``gather_predictions`` concatenates every worker's tensors (torchmetrics' uneven-size gather),
and ``domain_report`` computes exact AUC / logloss / GAUC per domain and overall.
A domain with no samples or only one class reports ``None`` for AUC with its count: never a crash.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc


class PredictionBuffer:
    """Accumulates one worker's predictions for a split (on CPU)."""

    def __init__(self, with_user: bool = False):
        self.with_user = with_user
        self.parts: dict[str, list[torch.Tensor]] = {"prob": [], "label": [], "domain": []}
        if with_user:
            self.parts["user"] = []

    def add(self, prob: torch.Tensor, label: torch.Tensor, domain: torch.Tensor, user: torch.Tensor | None = None):
        self.parts["prob"].append(prob.detach().float().cpu())
        self.parts["label"].append(label.detach().float().cpu())
        self.parts["domain"].append(domain.detach().long().cpu())
        if self.with_user:
            self.parts["user"].append(user.detach().long().cpu())

    def tensors(self) -> dict[str, torch.Tensor]:
        empty = {"prob": torch.float32, "label": torch.float32, "domain": torch.int64, "user": torch.int64}
        return {k: torch.cat(v) if v else torch.empty(0, dtype=empty[k]) for k, v in self.parts.items()}


def gather_predictions(local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All workers' predictions concatenated (every rank gets the full set)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    from torchmetrics.utilities.distributed import gather_all_tensors

    # gloo gathers CPU tensors; NCCL needs them on the current device.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = {}
    for key in sorted(local):
        parts = gather_all_tensors(local[key].to(device))
        out[key] = torch.cat([p.cpu() for p in parts])
    return out


def _auc(prob: torch.Tensor, label: torch.Tensor) -> float | None:
    positives = int(label.sum().item())
    if label.numel() == 0 or positives == 0 or positives == label.numel():
        return None  # undefined: one class only
    return float(binary_auroc(prob, label.long()).item())


def _logloss(prob: torch.Tensor, label: torch.Tensor) -> float | None:
    if label.numel() == 0:
        return None
    return float(F.binary_cross_entropy(prob.double().clamp(1e-7, 1 - 1e-7), label.double()).item())


def gauc(prob: np.ndarray, label: np.ndarray, user: np.ndarray) -> float | None:
    """Impression-weighted mean of per-user AUC over users having both classes (vectorised).

    Per user, AUC = (sum of positive ranks - P(P+1)/2) / (P*N), with average ranks for tied scores.
    """
    if len(prob) == 0:
        return None
    order = np.lexsort((prob, user))
    u, p, y = user[order], prob[order], label[order].astype(np.float64)
    n = len(u)
    user_start = np.r_[True, u[1:] != u[:-1]]
    group_id = np.cumsum(user_start) - 1
    starts = np.flatnonzero(user_start)
    pos_in_group = np.arange(n) - starts[group_id]
    # average rank over runs of equal (user, score)
    run_start = np.r_[True, (u[1:] != u[:-1]) | (p[1:] != p[:-1])]
    run_id = np.cumsum(run_start) - 1
    run_first = np.flatnonzero(run_start)
    run_len = np.diff(np.r_[run_first, n])
    first_rank = pos_in_group[run_first] + 1
    avg_rank = (first_rank + (first_rank + run_len - 1)) / 2.0
    rank = avg_rank[run_id]
    n_groups = len(starts)
    pos = np.bincount(group_id, weights=y, minlength=n_groups)
    size = np.bincount(group_id, minlength=n_groups).astype(np.float64)
    neg = size - pos
    pos_rank_sum = np.bincount(group_id, weights=rank * y, minlength=n_groups)
    valid = (pos > 0) & (neg > 0)
    if not valid.any():
        return None
    auc = (pos_rank_sum[valid] - pos[valid] * (pos[valid] + 1) / 2) / (pos[valid] * neg[valid])
    return float(np.sum(auc * size[valid]) / np.sum(size[valid]))


def _summary(prob, label, user) -> dict:
    n = int(label.numel())
    out = {
        "count": n,
        "positive_rate": float(label.mean().item()) if n else None,
        "auc": _auc(prob, label),
        "logloss": _logloss(prob, label),
    }
    if user is not None:
        out["gauc"] = gauc(prob.numpy(), label.numpy(), user.numpy())
    return out


def domain_report(preds: dict[str, torch.Tensor], num_domains: int, domain_names: list[str] | None = None) -> dict:
    """{"overall": {...}, "domains": [{"domain": 0, "name": ..., "count", "auc", "logloss", ...}, ...]}."""
    prob, label, domain = preds["prob"], preds["label"], preds["domain"]
    user = preds.get("user")
    report = {"overall": _summary(prob, label, user), "domains": []}
    for d in range(num_domains):
        mask = domain == d
        entry = _summary(prob[mask], label[mask], user[mask] if user is not None else None)
        entry = {"domain": d, "name": domain_names[d] if domain_names else str(d), **entry}
        report["domains"].append(entry)
    return report


def flat_metrics(report: dict, prefix: str) -> dict[str, float]:
    """``{"val/auc": ..., "val/d0/auc": ...}`` with undefined values as NaN (for logs and Ray reports)."""
    def num(v):
        return float("nan") if v is None else float(v)

    out = {}
    for key in ("auc", "logloss", "gauc", "count"):
        if key in report["overall"]:
            out[f"{prefix}/{key}"] = num(report["overall"][key])
    for entry in report["domains"]:
        for key in ("auc", "logloss", "gauc", "count"):
            if key in entry:
                out[f"{prefix}/d{entry['domain']}/{key}"] = num(entry[key])
    return out


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(split_report: dict) -> str:
    has_gauc = "gauc" in split_report["overall"]
    head = "| domain | name | samples | positive rate | AUC | logloss |" + (" GAUC |" if has_gauc else "")
    sep = "|---|---|---:|---:|---:|---:|" + ("---:|" if has_gauc else "")
    lines = [head, sep]

    def row(label, name, e):
        cells = [label, name, str(e["count"]), fmt(e["positive_rate"]), fmt(e["auc"]), fmt(e["logloss"])]
        if has_gauc:
            cells.append(fmt(e.get("gauc")))
        return "| " + " | ".join(cells) + " |"

    for e in split_report["domains"]:
        lines.append(row(str(e["domain"]), e["name"], e))
    lines.append(row("**all**", "", split_report["overall"]))
    return "\n".join(lines) + "\n"


def comparison_table(new: dict, old: dict, old_label: str = "previous model") -> str:
    """Per-domain test AUC of a run next to the model it started from (same split; the old model
    scores only the domains it knows, so overall figures compare only when the domains are the same)."""
    old_by_domain = {e["domain"]: e for e in old["domains"]}
    lines = [f"| domain | name | samples | AUC, this run | AUC, {old_label} | difference |", "|---|---|---:|---:|---:|---:|"]
    same_domains = set(old_by_domain) == {e["domain"] for e in new["domains"]}
    rows = [(str(e["domain"]), e["name"], e, old_by_domain.get(e["domain"])) for e in new["domains"]]
    rows.append(("**all**", "" if same_domains else "(other rows)", new["overall"], old["overall"]))
    for label, name, e, o in rows:
        if o is None:
            before, change = "new domain", ""
        else:
            before, change = fmt(o["auc"]), fmt(e["auc"] - o["auc"]) if same_domains or label != "**all**" else ""
        lines.append(f"| {label} | {name} | {e['count']} | {fmt(e['auc'])} | {before} | {change} |")
    return "\n".join(lines) + "\n"
