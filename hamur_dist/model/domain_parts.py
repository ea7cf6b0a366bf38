"""Which parts of a model belong to one domain (for growing a model to new domains and for training
only the new domains' parts).

    parts = domain_parts(model)
    parts.lists            # ModuleLists with one entry per domain, e.g. ("towers", "heads", "hamur.cells.1")
    parts.tensors          # parameters whose dim 0 is the domain, e.g. ("layers.0.domain_weight", ...)
    parts.blocked_tables   # per_domain: embedding table -> rows per domain block (domain d owns d*vocab..)

Explicit per-class knowledge: a class this module does not know is refused (TypeError) rather than
guessed from list lengths (MMoE may well have as many shared experts as domains).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hamur_dist.model.backbones import DCN, MLPTowers, SharedBottom, WideDeep
from hamur_dist.model.baselines import MMoE, PLE, PerDomain, Star


def table_key(name: str) -> str:
    """State-dict key (in the model) of embedding table ``name``."""
    return f"embedding.tables.{name}.weight"


@dataclass(frozen=True)
class DomainParts:
    num_domains: int
    lists: tuple[str, ...] = ()          # module names of ModuleLists indexed by domain
    tensors: tuple[str, ...] = ()        # parameter names whose dim 0 is indexed by domain
    blocked_tables: dict[str, int] = field(default_factory=dict)   # table -> rows per domain block

    @property
    def empty(self) -> bool:
        """True when no part of the model belongs to a single domain."""
        return not (self.lists or self.tensors or self.blocked_tables)

    def module_names(self, domain: int) -> list[str]:
        """The modules that are wholly domain ``domain``'s, e.g. ["towers.2", "heads.2"]."""
        return [f"{name}.{domain}" for name in self.lists]

    def list_domain(self, key: str) -> int | None:
        """Domain of a parameter / buffer key inside one entry of a per-domain ModuleList, else None."""
        for name in self.lists:
            prefix = name + "."
            if key.startswith(prefix):
                head = key[len(prefix):].split(".", 1)[0]
                if head.isdigit():
                    return int(head)
        return None

    def blocked_table_of(self, key: str) -> str | None:
        """Table name when ``key`` is a table blocked per domain (per_domain), else None."""
        for name in self.blocked_tables:
            if key == table_key(name):
                return name
        return None

    def describe(self) -> str:
        parts = [f"lists {list(self.lists)}"] if self.lists else []
        if self.tensors:
            parts.append(f"dim-0 tensors {list(self.tensors)}")
        if self.blocked_tables:
            parts.append(f"per-domain table blocks {sorted(self.blocked_tables)}")
        return "; ".join(parts) or "none"


def _hamur_lists(model: nn.Module) -> list[str]:
    hamur = getattr(model, "hamur", None)
    if hamur is None or not hamur.per_domain_cells:     # shared cells: one per slot for all domains
        return []
    return [f"hamur.cells.{slot}" for slot in hamur.cells]


def _star_parts(model: Star) -> tuple[list[str], list[str]]:
    tensors = []
    for i in range(len(model.layers)):
        tensors += [f"layers.{i}.domain_weight", f"layers.{i}.domain_bias"]
    tensors += ["out.domain_weight", "out.domain_bias"]
    lists = []
    for i in range(len(model.norms)):
        tensors += [f"norms.{i}.domain_gamma", f"norms.{i}.domain_beta"]
        lists.append(f"norms.{i}.norms")
    tensors.append("domain_embedding.weight")
    return lists, tensors


def _class_parts(model: nn.Module) -> tuple[list[str], list[str], dict[str, int]]:
    if isinstance(model, PerDomain):         # before MLPTowers: a subclass of it
        return ["towers", "heads"], [], {f.name: f.vocab_size for f in model.schema.sparse}
    if isinstance(model, (MLPTowers, SharedBottom)):
        return ["towers", "heads"] + _hamur_lists(model), [], {}
    if isinstance(model, (WideDeep, DCN)):   # DCNv2 is a DCN; reference mode: one shared head
        return ([] if model.reference else ["heads"]) + _hamur_lists(model), [], {}
    if isinstance(model, Star):
        lists, tensors = _star_parts(model)
        return lists + _hamur_lists(model), tensors, {}
    if isinstance(model, MMoE):              # experts are shared, however many there are
        return ["gates", "towers", "heads"], [], {}
    if isinstance(model, PLE):               # shared experts and shared_gate are shared
        lists = []
        for i in range(len(model.levels)):
            lists += [f"levels.{i}.specific", f"levels.{i}.gates"]
        return lists + ["towers", "heads"], [], {}
    raise TypeError(f"domain_parts does not know model class {type(model).__name__}; add it to "
                    f"hamur_dist.model.domain_parts (which of its parts belong to one domain)")


def domain_parts(model: nn.Module) -> DomainParts:
    """The per-domain parts of ``model`` (any model of ``build.MODELS``; pass the bare model, not a
    DDP wrapper). Checks that every part really has one entry / row per domain."""
    lists, tensors, blocked = _class_parts(model)
    d = model.num_domains
    for name in lists:
        module = model.get_submodule(name)
        if not isinstance(module, nn.ModuleList) or len(module) != d:
            raise TypeError(f"domain_parts: '{name}' of {type(model).__name__} should be a ModuleList of "
                            f"{d} entries (one per domain), got {type(module).__name__} of "
                            f"{len(module) if isinstance(module, nn.ModuleList) else '?'}")
    for name in tensors:
        shape = tuple(model.get_parameter(name).shape)
        if not shape or shape[0] != d:
            raise TypeError(f"domain_parts: '{name}' of {type(model).__name__} should have dim 0 = "
                            f"{d} (one row per domain), got shape {shape}")
    return DomainParts(d, tuple(lists), tuple(tensors), dict(blocked))
