"""Start a model from a previous run's weights on a dataset whose vocabularies and domains grew.

    state, report = grow_state_dict(old_state, new_model, old_schema, new_schema)
    new_model.load_state_dict(state)
    opt_state = grow_optimizer_state(old_opt.state_dict(), old_names, new_opt, new_named, report)

Growth only appends: every old id keeps its row (new ids after the old ones) and domains
0..D_old-1 keep their meaning (new domains after them). Old rows and old domains' parts are copied
bit for bit; new rows and new domains' parts keep ``new_model``'s fresh initialisation (BatchNorm
buffers included). Anything else that differs is refused with a ValueError naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hamur_dist.data.manifest import FeatureSchema
from hamur_dist.model.domain_parts import DomainParts, domain_parts, table_key


@dataclass(frozen=True)
class GrownTensor:
    """Where an old tensor's rows sit in its grown successor (dim 0 grew, other dims equal)."""
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]
    # per_domain tables: (old rows per domain, new rows per domain, old domains): block b of the old
    # tensor moves to rows b*new.. of the new one. None: old rows keep their index.
    blocks: tuple[int, int, int] | None = None

    def place(self, old: torch.Tensor, into: torch.Tensor) -> torch.Tensor:
        """Copy ``old``'s rows into ``into`` (new shape) where they belong; returns ``into``."""
        if tuple(old.shape) != self.old_shape or tuple(into.shape) != self.new_shape:
            raise ValueError(f"expected {self.old_shape} -> {self.new_shape}, got "
                             f"{tuple(old.shape)} -> {tuple(into.shape)}")
        with torch.no_grad():
            if self.blocks is None:
                into[:old.shape[0]].copy_(old)
            else:
                old_rows, new_rows, count = self.blocks
                for b in range(count):
                    into[b * new_rows:b * new_rows + old_rows].copy_(old[b * old_rows:(b + 1) * old_rows])
        return into


@dataclass
class GrowthReport:
    old_num_domains: int
    new_num_domains: int
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)   # grown vocab: feature -> (old, new)
    grown: dict[str, GrownTensor] = field(default_factory=dict)        # partly copied keys
    new_keys: list[str] = field(default_factory=list)                  # wholly fresh keys (new domains)

    @property
    def domains_grew(self) -> bool:
        return self.new_num_domains > self.old_num_domains

    @property
    def grew(self) -> bool:
        return bool(self.domains_grew or self.tables)

    def summary(self) -> str:
        parts = []
        if self.domains_grew:
            parts.append(f"domains {self.old_num_domains} -> {self.new_num_domains} "
                         f"({len(self.new_keys)} new keys)")
        parts += [f"{name} {a} -> {b} rows" for name, (a, b) in self.tables.items()]
        return "; ".join(parts) or "nothing grew"


def _refuse(key: str, old_shape, new_shape, why: str) -> ValueError:
    def fmt(s):
        return "absent" if s is None else str(tuple(s))
    return ValueError(f"cannot start from the old weights: '{key}' has shape {fmt(old_shape)} in the old "
                      f"state and {fmt(new_shape)} in the new model: {why}")


def _check_schemas(new_model: nn.Module, old: FeatureSchema, new: FeatureSchema) -> None:
    if new_model.num_domains != new.num_domains:
        raise ValueError(f"new_model has {new_model.num_domains} domains, new_schema {new.num_domains}")
    if old.sparse_names != new.sparse_names or old.dense_names != new.dense_names:
        raise ValueError(f"the features differ (renamed, added, removed or reordered): old sparse "
                         f"{old.sparse_names} dense {old.dense_names}, new sparse {new.sparse_names} "
                         f"dense {new.dense_names}; a model can only start from weights of the same features")
    if new.num_domains < old.num_domains:
        raise ValueError(f"the new dataset has {new.num_domains} domains, fewer than the old "
                         f"{old.num_domains}; domains can only be added after the old ones")
    for a, b in zip(old.sparse, new.sparse):
        if b.vocab_size < a.vocab_size:
            raise _refuse(table_key(a.name), (a.vocab_size,), (b.vocab_size,),
                          f"vocabulary of '{a.name}' shrank from {a.vocab_size} to {b.vocab_size} ids; "
                          f"vocabularies can only grow (new ids after the old ones)")


def _grow_table(key, old, fresh, parts: DomainParts, a, b, old_d: int, report: GrowthReport):
    blocked = parts.blocked_table_of(key) is not None
    old_rows = a.vocab_size * (old_d if blocked else 1)
    if tuple(old.shape) != (old_rows, fresh.shape[1]):
        raise _refuse(key, old.shape, fresh.shape,
                      f"the old schema says {old_rows} rows of width {fresh.shape[1]}"
                      + (f" ({a.vocab_size} ids x {old_d} domains)" if blocked else ""))
    if b.vocab_size > a.vocab_size:
        report.tables[a.name] = (a.vocab_size, b.vocab_size)
    if tuple(old.shape) == tuple(fresh.shape):
        return old
    spec = GrownTensor(tuple(old.shape), tuple(fresh.shape),
                       (a.vocab_size, b.vocab_size, old_d) if blocked else None)
    report.grown[key] = spec
    return spec.place(old, fresh.detach().clone())


def grow_state_dict(old_state: dict[str, torch.Tensor], new_model: nn.Module, old_schema: FeatureSchema,
                    new_schema: FeatureSchema) -> tuple[dict[str, torch.Tensor], GrowthReport]:
    """A full state dict for ``new_model`` (built for ``new_schema``) from ``old_state`` (a model of the
    same ModelConfig built for ``old_schema``), and what grew. Unchanged tensors may share storage
    with ``old_state``. ``new_model`` must hold every table as a parameter (plain EmbeddingCollection):
    build one with ``build_model(cfg, new_schema)`` and hand sharded collections the tables after."""
    _check_schemas(new_model, old_schema, new_schema)
    parts = domain_parts(new_model)
    old_d, new_d = old_schema.num_domains, new_schema.num_domains
    report = GrowthReport(old_d, new_d)
    features = {table_key(b.name): (a, b) for a, b in zip(old_schema.sparse, new_schema.sparse)}
    fresh_state = new_model.state_dict()
    missing = [k for k in features if k not in fresh_state]
    if missing:
        raise ValueError(f"new_model's state dict lacks the tables {missing} (a sharded embedding keeps "
                         f"sparse tables outside it); grow on a model built with plain tables")
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, fresh in fresh_state.items():
        domain = parts.list_domain(key)
        if domain is not None and domain >= old_d:
            out[key] = fresh.detach().clone()
            report.new_keys.append(key)
            continue
        if key not in old_state:
            raise _refuse(key, None, fresh.shape,
                          f"the old state lacks it (domain {domain}'s part)" if domain is not None
                          else "the old state lacks it (a different model or config?)")
        old = old_state[key]
        used.add(key)
        if key in features:
            out[key] = _grow_table(key, old, fresh, parts, *features[key], old_d, report)
        elif key in parts.tensors:
            if tuple(old.shape) != (old_d,) + tuple(fresh.shape[1:]):
                raise _refuse(key, old.shape, fresh.shape, f"dim 0 is the domain: expected "
                              f"{(old_d,) + tuple(fresh.shape[1:])} for {old_d} old domains")
            if old_d == new_d:
                out[key] = old
            else:
                spec = GrownTensor(tuple(old.shape), tuple(fresh.shape))
                report.grown[key] = spec
                out[key] = spec.place(old, fresh.detach().clone())
        elif tuple(old.shape) != tuple(fresh.shape):
            raise _refuse(key, old.shape, fresh.shape, "a shape change growth does not explain "
                          "(different config, e.g. hidden_dims, or different features?)")
        else:
            out[key] = old
    extra = [k for k in old_state if k not in used]
    if extra:
        raise _refuse(extra[0], old_state[extra[0]].shape, None,
                      f"the new model has no such key ({len(extra)} old keys unused: {extra[:5]}); "
                      f"a different model/config, or an old state with more domains than old_schema says?")
    return out, report


def _old_ids(old_opt_state: dict, old_param_names: list[str]) -> dict[str, int]:
    ids = [i for g in old_opt_state["param_groups"] for i in g["params"]]
    if len(ids) != len(old_param_names):
        raise ValueError(f"old_param_names has {len(old_param_names)} names, the old optimizer state "
                         f"{len(ids)} parameters")
    if len(set(old_param_names)) != len(old_param_names):
        raise ValueError("old_param_names has duplicate names")
    return dict(zip(old_param_names, ids))


def grow_optimizer_state(old_opt_state: dict, old_param_names: list[str], new_optimizer: torch.optim.Optimizer,
                         new_named_params: list[tuple[str, nn.Parameter]], report: GrowthReport) -> dict:
    """A state dict for ``new_optimizer`` (load it with ``new_optimizer.load_state_dict``) from an old
    optimizer's, matched by parameter NAME. ``old_param_names``: the old optimizer's parameters' names in
    its order (groups in order); ``new_named_params``: likewise for ``new_optimizer``.

    Per-parameter state of a grown parameter grows like it (old rows placed as in the weights, new rows
    zero; Adagrad's ``sum``: initial_accumulator_value); scalar state (``step``) is kept; a parameter
    without old state keeps what ``new_optimizer`` holds for it (nothing, or Adagrad's initial sum).
    Hyper-parameters (lr, weight_decay, ...) are ``new_optimizer``'s current ones."""
    flat = [p for g in new_optimizer.param_groups for p in g["params"]]
    if len(flat) != len(new_named_params) or any(a is not b for a, (_, b) in zip(flat, new_named_params)):
        raise ValueError("new_named_params must list new_optimizer's parameters in its order "
                         "(param_groups in order)")
    group_of = [g for g in new_optimizer.param_groups for _ in g["params"]]
    old_ids = _old_ids(old_opt_state, old_param_names)
    current = new_optimizer.state_dict()
    state: dict[int, dict] = {}
    for i, (name, param) in enumerate(new_named_params):
        mine = current["state"].get(i)
        old = old_opt_state["state"].get(old_ids[name]) if name in old_ids else None
        if old is None:
            if mine is not None:
                state[i] = mine
            continue
        entry = {}
        for k, v in old.items():
            if not torch.is_tensor(v) or v.dim() == 0 or tuple(v.shape) == tuple(param.shape):
                entry[k] = v.clone() if torch.is_tensor(v) else v
                continue
            spec = report.grown.get(name)
            if spec is None or tuple(v.shape) != spec.old_shape or tuple(param.shape) != spec.new_shape:
                raise _refuse(f"{name}' optimizer state '{k}", v.shape, param.shape,
                              "a shape change the growth report does not explain")
            if mine is not None and torch.is_tensor(mine.get(k)) and mine[k].shape == param.shape:
                base = mine[k].clone()
            else:
                fill = group_of[i].get("initial_accumulator_value", 0.0) if k == "sum" else 0.0
                base = torch.full(spec.new_shape, float(fill), dtype=v.dtype, device=v.device)
            entry[k] = spec.place(v.to(base.device, base.dtype), base)
        state[i] = entry
    return {"state": state, "param_groups": current["param_groups"]}
