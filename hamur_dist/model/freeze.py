"""Train only the new domains' parts of a grown model; everything else stays exactly as it was.

    frozen = freeze_all_but_new_domains(model, old_num_domains, extra_rows={"domain_indicator": D_old + 1})
    opt = torch.optim.Adam(frozen.trainable_parameters(), lr=..., weight_decay=...)
    for batch in data:
        frozen.train_mode(model)          # instead of model.train()
        loss = ...; opt.zero_grad(); loss.backward(); opt.step()
        frozen.restore()                  # after every optimizer step

Trainable: the new domains' entries of per-domain ModuleLists (towers, heads, paper-mode adapter
cells, gates, ...), rows [D_old:] of per-domain tensors (STAR), the new domains' blocks of per_domain
tables, and rows [first:] of the tables named in ``extra_rows``. A parameter with nothing trainable
gets ``requires_grad=False``. A partly trainable one keeps ``requires_grad=True``: a gradient hook
zeroes its frozen rows' gradient (so clipping and optimizer state see only trainable rows), and
``restore`` copies the frozen rows back after each step (weight decay and momentum move rows whose
gradient is zero, so masking alone is not enough). ``train_mode`` keeps every module that is not
wholly a new domain's in eval mode (BatchNorm running statistics of shared layers and old towers stay
put; their dropout is off). Take the snapshot (call this) after loading the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hamur_dist.model.domain_parts import DomainParts, domain_parts, table_key


@dataclass
class _Partial:
    param: nn.Parameter
    frozen_rows: int                      # rows [:frozen_rows] are frozen, the rest train
    saved: torch.Tensor
    handle: object


def _zero_frozen_rows(rows: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:rows] = 0
        return grad
    return hook


class FrozenParts:
    """What ``freeze_all_but_new_domains`` froze, and the per-step upkeep it needs."""

    def __init__(self, model: nn.Module, parts: DomainParts, old_num_domains: int,
                 train_modules: list[str], trainable: dict[str, nn.Parameter],
                 partial: dict[str, _Partial], frozen: list[str], unmanaged_tables: list[str]):
        self._model = model
        self.parts = parts
        self.old_num_domains = old_num_domains
        self.num_domains = parts.num_domains
        self.train_modules = train_modules        # modules run in train mode (new domains' entries)
        self.trainable = trainable                # wholly trainable parameters, by name
        self.partial = partial                    # partly trainable parameters, by name
        self.frozen = frozen                      # wholly frozen parameter names
        self.unmanaged_tables = unmanaged_tables  # tables not held as parameters (sharded sparse): untouched here

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) with something trainable, in the model's parameter order."""
        keep = set(self.trainable) | set(self.partial)
        return [(n, p) for n, p in self._model.named_parameters() if n in keep]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters to give the optimizer."""
        return [p for _, p in self.named_trainable_parameters()]

    def trainable_values(self) -> int:
        whole = sum(p.numel() for p in self.trainable.values())
        return whole + sum(p.param[p.frozen_rows:].numel() for p in self.partial.values())

    @torch.no_grad()
    def restore(self) -> None:
        """Put the frozen rows of partly trainable parameters back (call after every optimizer step)."""
        for part in self.partial.values():
            part.param[:part.frozen_rows].copy_(part.saved)

    @torch.no_grad()
    def snapshot(self) -> None:
        """Re-take the frozen rows' copies (only if the weights were loaded again after freezing)."""
        for part in self.partial.values():
            part.saved = part.param[:part.frozen_rows].detach().clone()

    def train_mode(self, model: nn.Module | None = None) -> nn.Module:
        """Training mode for the new domains' modules only; every other module runs in eval mode.
        The modules that contain a new domain's module (the model, ModuleLists: containers whose own
        computation does not depend on the mode) get ``training=True`` so that ``model.training``
        reads True. ``model``: the frozen model or a wrapper (DDP) whose ``.module`` it is."""
        target = self._model
        if model is not None and model is not target and getattr(model, "module", None) is not target:
            raise ValueError("train_mode: this is not the model freeze_all_but_new_domains froze")
        target.eval()
        for name in self.train_modules:
            target.get_submodule(name).train()
            atoms = name.split(".")
            for i in range(len(atoms)):
                target.get_submodule(".".join(atoms[:i])).training = True
        if model is not None and model is not target:
            model.training = True
        return model if model is not None else target

    def unfreeze(self, prefix: str) -> list[str]:
        """Let the frozen parameters of module ``prefix`` (e.g. "hamur.hyper") train too, in train mode.
        The old domains' predictions then change with them."""
        chosen = [n for n in self.frozen if n.startswith(prefix + ".")]
        if not chosen:
            raise ValueError(f"unfreeze: module '{prefix}' has no frozen parameters")
        params = dict(self._model.named_parameters())
        for name in chosen:
            params[name].requires_grad_(True)
            self.trainable[name] = params[name]
            self.frozen.remove(name)
        self.train_modules.append(prefix)
        return chosen

    def release(self) -> None:
        """Remove the gradient hooks and make every parameter trainable again."""
        for part in self.partial.values():
            part.handle.remove()
        for p in self._model.parameters():
            p.requires_grad_(True)

    def summary(self) -> str:
        total = sum(p.numel() for p in self._model.parameters())
        return (f"training domains {self.old_num_domains}..{self.num_domains - 1} only: "
                f"{self.trainable_values():,} of {total:,} values trainable "
                f"({len(self.trainable)} whole parameters, {len(self.partial)} partly: {sorted(self.partial)})")


def _partial_rows(model: nn.Module, parts: DomainParts, old_num_domains: int,
                  extra_rows: dict[str, int], params: dict[str, nn.Parameter]) -> dict[str, int]:
    """Parameter name -> first trainable row, for partly trainable parameters."""
    rows = {name: old_num_domains for name in parts.tensors}
    for table, vocab in parts.blocked_tables.items():
        rows[table_key(table)] = old_num_domains * vocab
    names = [f.name for f in model.schema.sparse]
    for table, first in extra_rows.items():
        key = table_key(table)
        if table not in names:
            raise ValueError(f"extra_rows: no embedding table '{table}' (tables: {names})")
        if key in rows:       # per_domain: the new domains' blocks already train whole
            continue
        if key not in params:
            raise ValueError(f"extra_rows: table '{table}' is not a parameter of the model (a sharded "
                             f"sparse table, updated by the sparse-row optimizer); cannot train part of it")
        if not 0 <= first <= params[key].shape[0]:
            raise ValueError(f"extra_rows: first trainable row {first} of table '{table}' is outside "
                             f"[0, {params[key].shape[0]}]")
        rows[key] = first
    for key in rows:
        if key not in params:
            raise ValueError(f"'{key}' belongs partly to the new domains but is not a parameter of the "
                             f"model (a sharded sparse table?); hold it as a dense table to freeze it")
    return rows


def freeze_all_but_new_domains(model: nn.Module, old_num_domains: int,
                               extra_rows: dict[str, int] | None = None) -> FrozenParts:
    """Freeze everything of ``model`` (the bare model, not a DDP wrapper) except what belongs to
    domains ``old_num_domains..`` (module docstring). ``extra_rows``: {table name: first trainable
    row} of embedding tables shared by all domains, e.g. the domain-indicator feature's table whose
    rows ``old_num_domains + 1..`` stand for the new domains (ignored for per_domain tables, whose new
    domains' blocks train whole). Raises ValueError when the model has no part of its own per domain."""
    parts = domain_parts(model)
    if not 1 <= old_num_domains < parts.num_domains:
        raise ValueError(f"old_num_domains must be in [1, {parts.num_domains - 1}] for a model of "
                         f"{parts.num_domains} domains (new domains come after the old ones); got {old_num_domains}")
    if parts.empty:
        raise ValueError(f"model '{model.cfg.name}' (hamur.mode={model.cfg.hamur.mode}, hamur.enabled="
                         f"{model.cfg.hamur.enabled}) has no per-domain parts to train alone: every "
                         f"parameter is shared by all domains, so training a new domain would change the "
                         f"old domains' predictions (paper mode gives W&D / DCN one head per domain)")
    params = dict(model.named_parameters())
    rows = _partial_rows(model, parts, old_num_domains, dict(extra_rows or {}), params)
    train_modules = [m for d in range(old_num_domains, parts.num_domains) for m in parts.module_names(d)]
    prefixes = tuple(m + "." for m in train_modules)
    trainable: dict[str, nn.Parameter] = {}
    partial: dict[str, _Partial] = {}
    frozen: list[str] = []
    for name, p in params.items():
        if name.startswith(prefixes):
            p.requires_grad_(True)
            trainable[name] = p
        elif name in rows and rows[name] < p.shape[0]:
            p.requires_grad_(True)
            k = rows[name]
            partial[name] = _Partial(p, k, p[:k].detach().clone(), p.register_hook(_zero_frozen_rows(k)))
        else:
            p.requires_grad_(False)
            frozen.append(name)
    if not trainable and not partial:
        raise ValueError(f"model '{model.cfg.name}': the new domains' parts ({parts.describe()}) hold no "
                         f"parameters to train")
    specs = getattr(model.embedding, "specs", [])
    unmanaged = [s.name for s in specs if table_key(s.name) not in params]
    return FrozenParts(model, parts, old_num_domains, train_modules, trainable, partial, frozen, unmanaged)
