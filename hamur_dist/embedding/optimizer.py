"""Row-sparse Adagrad and Adam for the sparse-update rows of a ``ShardedEmbeddingCollection``
(row-wise, table-wise and replicated-sparse tables: everything in its ``local_weight``).

Only the rows looked up (with a backward) since the last step are read or written; a step costs
O(touched rows), never O(table). State is kept per local row, so it shards with the table:

* adagrad: ``sum`` (per element). ``sum += g^2``; ``w -= lr * g / (sqrt(sum) + eps)``. On rows that
  are touched this is exactly ``torch.optim.Adagrad`` with sparse gradients (lr_decay 0).
* adam (lazy): ``exp_avg``, ``exp_avg_sq`` (per element) and ``step`` (per row). A touched row does
  ``step += 1`` and one Adam update with bias corrections ``1 - beta^step`` of its OWN step count.
  Untouched rows keep their moments as they are (no decay while unseen) and their count. This is
  ``torch.optim.SparseAdam``'s lazy rule, except that SparseAdam corrects the bias with the global
  step count; the two agree while every row is touched every step. Per-row counts keep a row seen
  for the first time late in training from getting an uncorrected, too-small first update.

Weight decay (touched rows only): by default L2, ``g += weight_decay * w`` before the update like
torch's Adam/Adagrad; with ``decoupled_weight_decay`` it is AdamW's ``w -= lr * weight_decay * w``.
Gradients come from the collection (already averaged over workers, see its docstring; with
replicated-sparse tables on several workers ``step`` is a collective, every rank calls it); ``step``
consumes them, so gradient accumulation over several forward/backward passes works as with dense.
"""
from __future__ import annotations

import math
import mmap

import torch

from hamur_dist.embedding.collection import ShardedEmbeddingCollection

KINDS = ("adam", "adagrad")


def lazy_zeros(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Zeros whose memory the OS hands out page by page on first write (CPU): state of rows never
    touched costs no resident memory. ``torch.zeros`` writes every page up front, and numpy's
    calloc asks for 2 MiB huge pages, which random row writes fill completely; a private anonymous
    mmap with huge pages declined gives plain 4 KiB pages. Private, not shared: reading a page never
    written (``torch.save`` of the whole state at every checkpoint) then maps the kernel's one zero
    page instead of allocating it, and the memory counts as the process's own (RssAnon)."""
    if torch.device(device).type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    count = math.prod(shape)
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    nbytes = count * torch.empty(0, dtype=dtype).element_size()
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):   # Linux: with THP "always" a first write would fill 2 MiB
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return torch.frombuffer(buffer, dtype=dtype).view(tuple(shape))   # the tensor keeps the mapping alive


class SparseRowOptimizer:
    def __init__(self, collection: ShardedEmbeddingCollection, kind: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float | None = None,
                 decoupled_weight_decay: bool = False, initial_accumulator_value: float = 0.0):
        if kind not in KINDS:
            raise ValueError(f"sparse optimiser kind must be one of {list(KINDS)}, got {kind!r}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.collection = collection
        self.kind = kind
        self.hparams = {"lr": lr, "weight_decay": weight_decay, "betas": tuple(betas),
                        "eps": (1e-8 if kind == "adam" else 1e-10) if eps is None else eps,
                        "decoupled_weight_decay": decoupled_weight_decay}
        weight = collection.local_weight
        if kind == "adam":
            self.state = {"exp_avg": lazy_zeros(weight.shape, weight.dtype, weight.device),
                          "exp_avg_sq": lazy_zeros(weight.shape, weight.dtype, weight.device),
                          "step": lazy_zeros(weight.shape[:1], torch.int32, weight.device)}
        elif initial_accumulator_value == 0.0:
            self.state = {"sum": lazy_zeros(weight.shape, weight.dtype, weight.device)}
        else:
            self.state = {"sum": torch.full_like(weight, initial_accumulator_value)}

    @classmethod
    def from_config(cls, collection: ShardedEmbeddingCollection, embedding_cfg, train_cfg) -> "SparseRowOptimizer":
        """``embedding.sparse_optimizer`` with ``embedding.sparse_lr`` (default ``train.lr``) and
        ``train.weight_decay`` (decoupled when ``train.optimizer`` is adamw)."""
        lr = embedding_cfg.sparse_lr if embedding_cfg.sparse_lr is not None else train_cfg.lr
        return cls(collection, embedding_cfg.sparse_optimizer, lr=lr, weight_decay=train_cfg.weight_decay,
                   decoupled_weight_decay=train_cfg.optimizer == "adamw")

    def zero_grad(self) -> None:
        self.collection.clear_grads()

    @torch.no_grad()
    def step(self) -> int:
        """Update the rows touched since the last step; returns how many rows were updated."""
        rows, grad = self.collection.coalesced_grads()
        self.collection.clear_grads()
        if rows.numel() == 0:
            return 0
        h = self.hparams
        lr, wd, eps = h["lr"], h["weight_decay"], h["eps"]
        table = self.collection.local_weight
        weight = table.index_select(0, rows)
        if wd and not h["decoupled_weight_decay"]:
            grad = grad.add(weight, alpha=wd)
        if h["decoupled_weight_decay"] and wd:
            weight.mul_(1.0 - lr * wd)
        if self.kind == "adagrad":
            acc = self.state["sum"].index_select(0, rows).addcmul_(grad, grad)
            self.state["sum"].index_copy_(0, rows, acc)
            weight.addcdiv_(grad, acc.sqrt().add_(eps), value=-lr)
        else:
            beta1, beta2 = h["betas"]
            step = self.state["step"].index_select(0, rows) + 1
            exp_avg = self.state["exp_avg"].index_select(0, rows).mul_(beta1).add_(grad, alpha=1.0 - beta1)
            exp_avg_sq = self.state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(grad, grad,
                                                                                       value=1.0 - beta2)
            self.state["step"].index_copy_(0, rows, step)
            self.state["exp_avg"].index_copy_(0, rows, exp_avg)
            self.state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
            steps = step.to(torch.float64).unsqueeze(1)
            step_size = (lr / (1.0 - torch.pow(beta1, steps))).to(grad.dtype)
            bias2_sqrt = (1.0 - torch.pow(beta2, steps)).sqrt().to(grad.dtype)
            denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
            weight.sub_(exp_avg.div(denom).mul_(step_size))
        table.index_copy_(0, rows, weight)
        return rows.numel()

    def table_state(self, name: str) -> dict[str, torch.Tensor]:
        """Views of this rank's optimiser state for the rows of table ``name`` (for checkpoints)."""
        where = self.collection.local_slice(name)
        return {key: value[where] for key, value in self.state.items()}

    def state_dict(self) -> dict:
        """This rank's state (local rows only); see ``save_shard`` for checkpoints that reshard."""
        return {"kind": self.kind, "hparams": dict(self.hparams),
                "state": {k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"optimiser state is for {state.get('kind')!r}, this optimiser is {self.kind!r}")
        for key, value in self.state.items():
            saved = state["state"].get(key)
            if saved is None or saved.shape != value.shape:
                raise ValueError(f"optimiser state '{key}': expected shape {tuple(value.shape)}, got "
                                 f"{None if saved is None else tuple(saved.shape)}")
            value.copy_(saved)
        self.hparams.update(state.get("hparams", {}))
