"""Next-day synthetic data: ``hamur prepare synthetic --out DAY2 --like DAY1 [--drift D] [--new-ids S] [--grow-vocab]``.

The new day runs the parent's generator (the ``SyntheticSpec`` its manifest records) with new draws
(another seed: by default the parent's + 1, moved past any seed an ancestor used; a seed an ancestor
used is refused) and with two changes a model trained on the parent meets in production:

* drift: the planted weights (sparse ``w`` and dense ``v``) move,
  ``w <- sqrt(1 - drift^2) * w + drift * w_fresh``, ``w_fresh`` drawn like ``w`` from the new seed:
  the logit keeps its spread, its direction turns (cosine about sqrt(1 - drift^2) with the
  parent's). Id effects and domain biases stay: a known id means the same on every day.
* new ids: a share ``new_ids`` of every feature's values are ids the parent never saw, drawn with
  the generator's Zipf shape (hot ranks scrambled) in ``[V, V + ceil(V * new_id_growth))``, V the
  parent's vocabulary size, with their own planted effects. The other ids are drawn as in the
  first dataset of the chain (same Zipf popularity); ids a grown parent added are not drawn again.

Frozen (default): new ids are written as id 0 and counted per feature in ``manifest.unknown_ids``;
vocab sizes, fingerprints and domains stay the parent's. ``grow_vocab``: ids are kept and each
vocabulary grows to its max id + 1 (``lineage["grown"]``). The new spec records it all
(``signal_seed``, ``drift_steps``, ``new_ids``, ``new_ids_from``), so ``PlantedSignal(spec)`` is the
oracle of the new day as well, and a next day of a next day chains.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.like import Parent, lineage, load_parent
from hamur_dist.data.manifest import Manifest
from hamur_dist.data.vocabulary import identity_fingerprint

DEFAULT_DRIFT = 0.1
DEFAULT_NEW_IDS = 0.05
NEW_ID_GROWTH = 0.25          # new ids of a day lie in [V, V * (1 + growth)), V the parent's vocab size
DRIFT_SALT = 0xD21F7          # fresh weights of a drift step: default_rng([step seed, DRIFT_SALT])
NEXT_DAY_FIELDS = ("new_ids", "new_ids_from", "new_id_growth", "signal_seed", "drift_steps")   # set by --like


def new_id_range(known: int, growth: float) -> tuple[int, int]:
    """[low, high): where the new ids of a feature whose known vocabulary has ``known`` ids lie."""
    return known, known + max(1, math.ceil(known * growth))


def drift_weights(weights: np.ndarray, fresh: np.ndarray, drift: float) -> np.ndarray:
    return math.sqrt(1.0 - drift * drift) * weights + drift * fresh


def check_next_day_fields(spec, max_vocab: int) -> None:
    """The next-day fields of a ``SyntheticSpec`` are in range."""
    if not 0 <= spec.new_ids < 1 or spec.new_id_growth <= 0:
        raise ConfigError("synthetic: new_ids must be in [0, 1) and new_id_growth > 0")
    if any(len(step) != 2 or not 0 <= step[1] <= 1 for step in spec.drift_steps):
        raise ConfigError("synthetic: drift_steps are [seed, drift] pairs with drift in [0, 1]")
    known = spec.new_ids_from
    if known is not None and (len(known) != len(spec.vocab_sizes) or
                              any(not v <= k <= max_vocab for k, v in zip(known, spec.vocab_sizes))):
        raise ConfigError(f"synthetic: new_ids_from needs one value per feature in [vocab size, {max_vocab}]")


def used_seeds(record: dict) -> set[int]:
    """Every seed a synthetic dataset and the datasets it was made from drew with."""
    seeds = {int(record["seed"])}
    if record.get("signal_seed") is not None:
        seeds.add(int(record["signal_seed"]))
    seeds.update(int(step[0]) for step in record.get("drift_steps") or [])
    return seeds


@dataclass
class NextDay:
    """A next-day dataset to make: its parent, its generator spec and the parent's vocab sizes."""
    parent: Parent
    spec: dict                  # SyntheticSpec fields of the new day
    known: list[int]            # the parent's vocab size of each f.. feature: ids from there on are new

    def encode_below(self) -> list[int] | None:
        """Frozen: per feature, the first id written as 0 (the parent's vocab size); grown: None."""
        return None if self.parent.grow_vocab else list(self.known)


def resolve_spec(spec_type: type, rows: int | None, seed: int | None, num_domains: int | None, like, grow_vocab: bool,
                 drift: float | None, new_ids: float | None, options: dict):
    """(spec, NextDay plan or None) of ``prepare_synthetic``'s options; ``spec_type`` is ``SyntheticSpec``
    (passed in: this module does not import the generator). Unchecked: call ``spec.validate()``."""
    fields = {f.name for f in dataclasses.fields(spec_type)}
    unknown = (set(options) - fields) | (set(options) & set(NEXT_DAY_FIELDS))
    if unknown:
        raise ConfigError(f"synthetic: unknown option(s) {sorted(unknown)}")
    if like is None:
        if grow_vocab or drift is not None or new_ids is not None:
            raise ConfigError("--grow-vocab, --drift and --new-ids make next-day data of a synthetic dataset: "
                              "give --like")
        return spec_type(rows=1_000_000 if rows is None else rows, seed=2022 if seed is None else seed,
                         num_domains=3 if num_domains is None else num_domains, **options), None
    given = {**options, **({} if num_domains is None else {"num_domains": num_domains})}
    plan = plan_next_day(like, grow_vocab, rows, seed, drift, new_ids, given)
    if set(plan.spec) - fields:
        raise ConfigError(f"--like {like}: its synthetic spec has fields this version lacks: "
                          f"{sorted(set(plan.spec) - fields)}")
    return spec_type(**plan.spec), plan


def plan_next_day(like: str | Path, grow_vocab: bool, rows: int | None, seed: int | None, drift: float | None,
                  new_ids: float | None, spec_options: dict) -> NextDay:
    parent = load_parent(like, grow_vocab, preparer="synthetic")
    record = parent.manifest.source.get("spec")
    if not isinstance(record, dict) or not isinstance(record.get("vocab_sizes"), list) or "seed" not in record:
        raise ConfigError(f"--like {like}: its manifest records no synthetic generator spec")
    if spec_options:
        raise ConfigError(f"--like {like}: next-day data uses the dataset's generator; {sorted(spec_options)} "
                          "cannot be changed (rows, seed, drift and new_ids can)")
    drift = DEFAULT_DRIFT if drift is None else float(drift)
    new_ids = DEFAULT_NEW_IDS if new_ids is None else float(new_ids)
    if not 0 <= drift <= 1:
        raise ConfigError(f"--drift must be in [0, 1], got {drift}")
    if not 0 <= new_ids < 1:
        raise ConfigError(f"--new-ids must be in [0, 1), got {new_ids}")
    used = used_seeds(record)
    if seed is None:
        seed = int(record["seed"]) + 1
        while seed in used:
            seed += 1
    elif int(seed) in used:
        raise ConfigError(f"--seed {seed}: {parent.root} (or a dataset it was made from) was drawn with that "
                          "seed; next-day data must be new draws (leave --seed out for the parent's + 1)")
    known = []
    for index in range(len(record["vocab_sizes"])):
        feature = parent.feature(f"f{index:02d}")
        if feature is None:
            raise ConfigError(f"--like {like}: its manifest lacks sparse feature f{index:02d} of its spec")
        known.append(int(feature.vocab_size))
    signal_seed = record.get("signal_seed")
    spec = dict(record, rows=int(record["rows"] if rows is None else rows), seed=int(seed), new_ids=new_ids,
                new_ids_from=known, new_id_growth=float(record.get("new_id_growth", NEW_ID_GROWTH)),
                signal_seed=int(record["seed"] if signal_seed is None else signal_seed),
                drift_steps=[*(list(step) for step in record.get("drift_steps") or []), [int(seed), drift]])
    return NextDay(parent, spec, known)


def track_ids(block: dict, names: list[str], encode_below: list[int] | None, unknown: list[int],
              top: list[int]) -> None:
    """Per feature of a generated block: raise ``top`` to its max id; with ``encode_below`` (a frozen
    parent's vocab sizes) write the ids from there on as 0, counted in ``unknown``."""
    for f, name in enumerate(names):
        ids = block[name]
        top[f] = max(top[f], int(ids.max(initial=0)))
        if encode_below is not None:
            new = ids >= encode_below[f]
            unknown[f] += int(new.sum())
            ids[new] = 0


def finish_next_day(plan: NextDay, manifest: Manifest, max_ids: list[int]) -> None:
    """Frozen: the parent's vocab sizes and fingerprints (computed where the parent recorded none);
    grown: each vocabulary covers its max id. Then the lineage (after the sizes: it records what grew)."""
    for feature, known, top in zip(manifest.sparse, plan.known, max_ids):
        feature.vocab_size = int(top) + 1 if plan.parent.grow_vocab and top >= known else known
        feature.fingerprint = identity_fingerprint(feature.vocab_size)
        old = plan.parent.feature(feature.name)
        if feature.vocab_size == known and old.fingerprint is not None:
            feature.fingerprint = old.fingerprint
    manifest.lineage = lineage(plan.parent, manifest)
