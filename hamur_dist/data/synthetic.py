"""An Ali-CCP-shaped synthetic dataset for scale work, with a planted signal a model can learn.

Rows: a domain drawn with a configurable skew (default Ali-CCP's 32.2 : 0.64 : 52.4 M rows), one
Zipf-distributed id per sparse feature (vocabularies up to billions: ids are a scrambled power-law
rank), uniform dense values in [0, 1), and a label drawn from

    logit = bias[d] + sum_f w[d, f] * effect_f,d(id_f) + sum_k v[d, k] * (x_k - 0.5) * sqrt(12)

where ``effect_f,d(id)`` mixes an effect shared by all domains with a domain-specific one, both
computed from ``splitmix64(id ^ key)``: no table of size vocab is ever built. Weights and effects
mix a part common to all domains with a domain-specific part (``shared``), so domains are related
but per-domain models differ. Everything is derived from ``seed`` (shard k of split s
uses the seed sequence [seed, s, k]), so the same seed gives byte-identical shards, whatever the
number of worker processes. ``like=DATASET`` makes next-day data of a synthetic dataset: drifted
weights, a share of new ids (``hamur_dist.data.synthetic_next_day``).
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from hamur_dist.config_loader import ConfigError
from hamur_dist.data.encoders import splitmix64
from hamur_dist.data.manifest import SPLITS, DenseFeature, DomainInfo, Manifest, SparseFeature, SplitInfo
from hamur_dist.data.splitting import shard_quotas, split_sizes
from hamur_dist.data.synthetic_next_day import (DRIFT_SALT, NEW_ID_GROWTH, check_next_day_fields,
                                                drift_weights, finish_next_day, new_id_range,
                                                resolve_spec, track_ids)
from hamur_dist.data.validation import shard_schema
from hamur_dist.data.vocabulary import domain_fingerprint, identity_fingerprint
from hamur_dist.data.staged_output import StagedOutput
from hamur_dist.data.writer import SplitWriter, dictionary_columns

# Vocabulary sizes shaped like Ali-CCP's 22 non-domain fields: user, 8 user-profile fields, item,
# category, shop, intention, brand, 4 user x item crosses, 4 behaviour fields.
ALI_CCP_LIKE_VOCABS = [200_000, 100, 20, 10, 10, 10, 10, 10, 10, 500_000, 10_000, 300_000, 100_000, 80_000,
                       50_000, 50_000, 20_000, 20_000, 100_000, 100_000, 50_000, 50_000]
ALI_CCP_DOMAIN_WEIGHTS = [32.2, 0.64, 52.4]
_SCRAMBLE_PRIME = 2_654_435_761     # coprime with any vocabulary below it: rank -> id is a bijection
_MAX_VOCAB = 3_000_000_000          # keeps (rank * prime) inside int64


@dataclass
class SyntheticSpec:
    rows: int = 1_000_000
    num_domains: int = 3
    domain_weights: list[float] | None = None   # default: Ali-CCP's skew for 3 domains, 1/(d+1) otherwise
    vocab_sizes: list[int] = field(default_factory=lambda: list(ALI_CCP_LIKE_VOCABS))
    num_dense: int = 8
    zipf_a: float = 1.1                         # id popularity ~ rank^-a
    signal: float = 1.5                         # std of the planted logit around the domain bias
    shared: float = 0.5                         # share of weights and id effects common to all domains
    base_ctr: list[float] | None = None         # per-domain click rate at zero signal; default 0.15..0.35
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2022
    # next-day data (set by ``like``): a share of ids beyond the known vocabulary, and the planted
    # signal of signal_seed turned by each [seed, drift] step in turn
    new_ids: float = 0.0
    new_ids_from: list[int] | None = None       # per feature, where new ids start (default: vocab_sizes)
    new_id_growth: float = NEW_ID_GROWTH
    signal_seed: int | None = None              # seed of the planted signal (default: seed)
    drift_steps: list[list[float]] = field(default_factory=list)

    def validate(self) -> None:
        if self.rows < 1 or self.num_domains < 1 or self.num_dense < 0 or not self.vocab_sizes:
            raise ConfigError("synthetic: rows, num_domains >= 1, num_dense >= 0 and a vocab size are needed")
        if any(v < 2 or v > _MAX_VOCAB for v in self.vocab_sizes):
            raise ConfigError(f"synthetic: every vocab size must be in [2, {_MAX_VOCAB}]")
        for name in ("domain_weights", "base_ctr"):
            value = getattr(self, name)
            if value is not None and len(value) != self.num_domains:
                raise ConfigError(f"synthetic: {name} needs {self.num_domains} values, got {len(value)}")
        if self.base_ctr is not None and not all(0 < c < 1 for c in self.base_ctr):
            raise ConfigError("synthetic: base_ctr values must be in (0, 1)")
        if not 0 <= self.shared <= 1 or self.zipf_a <= 0:
            raise ConfigError("synthetic: shared must be in [0, 1] and zipf_a > 0")
        check_next_day_fields(self, _MAX_VOCAB)

    @property
    def sparse_names(self) -> list[str]:
        return [f"f{i:02d}" for i in range(len(self.vocab_sizes))]

    @property
    def dense_names(self) -> list[str]:
        return [f"d{k}" for k in range(self.num_dense)]

    @property
    def domain_probs(self) -> np.ndarray:
        weights = self.domain_weights or (ALI_CCP_DOMAIN_WEIGHTS if self.num_domains == 3 else
                                          [1 / (d + 1) for d in range(self.num_domains)])
        weights = np.asarray(weights, dtype=np.float64)
        return weights / weights.sum()


class PlantedSignal:
    """The per-domain logit of the generator, computable for any rows (an oracle for benchmarks)."""

    def __init__(self, spec: SyntheticSpec):
        base = spec.seed if spec.signal_seed is None else spec.signal_seed
        rng = np.random.default_rng([base, 0x5EED])
        features, domains = len(spec.vocab_sizes), spec.num_domains
        self.w, self.v = self._weights(spec, rng)
        self.key_shared = rng.integers(0, 2**63, size=features, dtype=np.uint64)
        self.key_domain = rng.integers(0, 2**63, size=(features, domains), dtype=np.uint64)
        if spec.base_ctr is not None:
            ctr = np.asarray(spec.base_ctr, dtype=np.float64)
        else:
            ctr = np.linspace(0.15, 0.35, domains) if domains > 1 else np.array([0.25])
        self.bias = np.log(ctr / (1 - ctr))
        for seed, drift in spec.drift_steps:           # next days: the weights turn, ids keep their effects
            w, v = self._weights(spec, np.random.default_rng([int(seed), DRIFT_SALT]))
            self.w, self.v = drift_weights(self.w, w, drift), drift_weights(self.v, v, drift)
        self.shared = math.sqrt(spec.shared)
        self.specific = math.sqrt(1 - spec.shared)
        # Under Zipf a few hot ids carry most rows, so raw effects are far from mean 0 / variance 1
        # over the data. Standardise them with moments estimated on a fixed sample of ids, so that
        # base_ctr and signal keep their meaning whatever the vocabularies.
        calibration = np.random.default_rng([base, 0xCA1])
        self.center = np.zeros((features, domains))
        self.scale = np.ones((features, domains))
        for f, vocab in enumerate(spec.vocab_sizes):
            ids = zipf_ids(calibration, 20_000, vocab, spec.zipf_a, f)
            for d in range(domains):
                raw = self._raw_effect(f, ids, np.full(len(ids), d))
                self.center[f, d], self.scale[f, d] = raw.mean(), max(raw.std(), 1e-6)

    @staticmethod
    def _weights(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sparse and dense weights: a part common to all domains + a domain-specific part (related domains)."""
        features, domains = len(spec.vocab_sizes), spec.num_domains
        scale = spec.signal / math.sqrt(features + spec.num_dense)
        common, own = math.sqrt(spec.shared), math.sqrt(1 - spec.shared)
        w = scale * (common * rng.normal(size=features) + own * rng.normal(size=(domains, features)))
        v = scale * (common * rng.normal(size=spec.num_dense) + own * rng.normal(size=(domains, spec.num_dense)))
        return w, v

    @staticmethod
    def _unit(hashed: np.ndarray) -> np.ndarray:
        """uint64 hash -> uniform(-sqrt 3, sqrt 3): mean 0, variance 1."""
        return ((hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2 - 1) * math.sqrt(3)

    def effect(self, f: int, ids: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Effect of feature f's ids, about mean 0 / variance 1 over the generated id distribution."""
        return (self._raw_effect(f, ids, domain) - self.center[f, domain]) / self.scale[f, domain]

    def _raw_effect(self, f: int, ids: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Shared part from splitmix64(id ^ key_f); domain part re-mixes that hash with a per-domain key."""
        hashed = splitmix64(ids.astype(np.uint64) ^ self.key_shared[f])
        specific = (hashed ^ self.key_domain[f][domain]) * np.uint64(0xD6E8FEB86659FD93)
        specific ^= specific >> np.uint64(32)
        return self.shared * self._unit(hashed) + self.specific * self._unit(specific)

    def logit(self, domain: np.ndarray, ids: list[np.ndarray], dense: np.ndarray | None) -> np.ndarray:
        out = self.bias[domain].copy()
        for f, column in enumerate(ids):
            out += self.w[domain, f] * self.effect(f, column, domain)
        if dense is not None and dense.shape[1]:
            out += (((dense - 0.5) * math.sqrt(12)) * self.v[domain]).sum(axis=1)
        return out


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, a: float, feature: int) -> np.ndarray:
    """Ids in [1, vocab): a bounded power-law rank (inverse CDF), scrambled so hot ids are spread out."""
    top = vocab - 1
    u = rng.random(n)
    if abs(a - 1.0) < 1e-9:
        x = np.power(float(top + 1), u)
    else:
        x = np.power(1.0 + u * ((top + 1.0) ** (1.0 - a) - 1.0), 1.0 / (1.0 - a))
    rank = np.minimum(x.astype(np.int64), top)                    # 1..top
    offset = int(splitmix64(np.array([feature], dtype=np.uint64))[0] % np.uint64(top))
    return 1 + ((rank - 1) * _SCRAMBLE_PRIME + offset) % top


def feature_ids(spec: SyntheticSpec, rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    """Feature f's ids: Zipf in [1, vocab); a share ``new_ids`` of them Zipf beyond the known vocabulary."""
    ids = zipf_ids(rng, n, spec.vocab_sizes[f], spec.zipf_a, f)
    if spec.new_ids > 0:
        low, high = new_id_range((spec.new_ids_from or spec.vocab_sizes)[f], spec.new_id_growth)
        new = rng.random(n) < spec.new_ids
        ids[new] = low - 1 + zipf_ids(rng, int(new.sum()), high - low + 1, spec.zipf_a, f + len(spec.vocab_sizes))
    return ids


def generate_block(spec: SyntheticSpec, signal: PlantedSignal, rng: np.random.Generator, n: int) -> dict:
    domain = rng.choice(spec.num_domains, size=n, p=spec.domain_probs).astype(np.int64)
    ids = [feature_ids(spec, rng, n, f) for f in range(len(spec.vocab_sizes))]
    dense = rng.random((n, spec.num_dense), dtype=np.float32)
    label = rng.random(n) < 1.0 / (1.0 + np.exp(-signal.logit(domain, ids, dense)))
    columns = dict(zip(spec.sparse_names, ids))
    columns["domain_indicator"] = domain + 1
    columns.update({name: dense[:, k] for k, name in enumerate(spec.dense_names)})
    columns["domain"] = domain
    columns["label"] = label.astype(np.float32)
    return columns


def _write_shard(spec_dict: dict, root: str, split: str, index: int, rows: int, row_group_rows: int,
                 schema: pa.Schema, dictionary: list[str], encode_below: list[int] | None = None):
    """Write one shard; returns its SplitInfo, per feature the ids written as 0 (those >= encode_below,
    a frozen parent's vocab sizes) and the max id drawn."""
    spec = SyntheticSpec(**spec_dict)
    signal = PlantedSignal(spec)
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), index])
    writer = SplitWriter(Path(root), split, schema, rows, row_group_rows, spec.num_domains, "domain", "label",
                         first_shard=index, dictionary=dictionary)
    unknown, top = [0] * len(spec.vocab_sizes), [0] * len(spec.vocab_sizes)
    for start in range(0, rows, row_group_rows):
        block = generate_block(spec, signal, rng, min(row_group_rows, rows - start))
        track_ids(block, spec.sparse_names, encode_below, unknown, top)
        writer.append(pa.table(block))
    return writer.close(), unknown, top


def synthetic_manifest(spec: SyntheticSpec, vocab_sizes: list[int] | None = None) -> Manifest:
    """The manifest of ``spec``'s data; ``vocab_sizes``: the f.. features' sizes (default the spec's)."""
    sizes = spec.vocab_sizes if vocab_sizes is None else vocab_sizes
    sparse = [SparseFeature(name, vocab, fingerprint=identity_fingerprint(vocab))
              for name, vocab in zip(spec.sparse_names, sizes)]
    sparse.append(SparseFeature("domain_indicator", spec.num_domains + 1, source="domain",
                                fingerprint=domain_fingerprint(spec.num_domains)))
    dense = [DenseFeature(name, "none", {"min": 0.0, "max": 1.0}) for name in spec.dense_names]
    return Manifest(name="synthetic", sparse=sparse, dense=dense,
                    domain=DomainInfo("domain", spec.num_domains, [f"domain{d}" for d in range(spec.num_domains)]),
                    label="label", splits={}, user_column=spec.sparse_names[0],
                    source={"preparer": "synthetic", "spec": dataclasses.asdict(spec)})


def prepare_synthetic(out, rows: int | None = None, seed: int | None = None, num_domains: int | None = None,
                      shard_rows: int = 1_000_000, row_group_rows: int = 65_536, workers: int | None = None,
                      overwrite: bool = False, progress: bool | None = None, like: str | Path | None = None,
                      grow_vocab: bool = False, drift: float | None = None, new_ids: float | None = None,
                      **spec_options) -> Manifest:
    """Generate the dataset (rows 1M, seed 2022, 3 domains unless given); ``spec_options`` are further
    ``SyntheticSpec`` fields (vocab_sizes, ...). With ``like`` (a synthetic dataset): next-day data of
    it (``hamur_dist.data.synthetic_next_day``; drift default 0.1, new_ids default 0.05)."""
    spec, plan = resolve_spec(SyntheticSpec, rows, seed, num_domains, like, grow_vocab, drift, new_ids, spec_options)
    spec.validate()
    if shard_rows < 1 or row_group_rows < 1:
        raise ConfigError("shard_rows and row_group_rows must be >= 1")
    workers = max(1, workers or os.cpu_count() or 1)
    manifest = synthetic_manifest(spec, None if plan is None else plan.known)
    schema = shard_schema(manifest)
    encode_below = None if plan is None else plan.encode_below()
    started = time.perf_counter()
    with StagedOutput(out, overwrite) as staged:
        tasks = [(split, i, n) for split, size in zip(SPLITS, split_sizes(spec.rows, spec.fractions))
                 for i, n in enumerate(shard_quotas(size, shard_rows))]
        for split in SPLITS:
            (staged.path / split).mkdir()
        args = [(dataclasses.asdict(spec), str(staged.path), split, i, n, row_group_rows, schema,
                 dictionary_columns(manifest), encode_below)
                for split, i, n in tasks]
        results: dict[tuple[str, int], tuple] = {}
        bar = tqdm(total=spec.rows, unit="rows", unit_scale=True, desc="generate", leave=False,
                   disable=None if progress is None else not progress)
        with bar:
            if workers == 1:
                for a in args:
                    results[(a[2], a[3])] = _write_shard(*a)
                    bar.update(a[4])
            else:
                context = multiprocessing.get_context("spawn")   # safe even when called from threaded code
                with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=context) as pool:
                    futures = {pool.submit(_write_shard, *a): a for a in args}
                    for future in as_completed(futures):
                        a = futures[future]
                        results[(a[2], a[3])] = future.result()
                        bar.update(a[4])
        manifest.splits = {split: _merge([results[(s, i)][0] for s, i, _ in tasks if s == split], spec.num_domains)
                           for split in SPLITS}
        unknown = np.sum([r[1] for r in results.values()], axis=0)
        manifest.unknown_ids = {name: int(n) for name, n in zip(spec.sparse_names, unknown)}
        if plan is not None:
            finish_next_day(plan, manifest, list(np.max([r[2] for r in results.values()], axis=0)))
        seconds = time.perf_counter() - started
        manifest.source.update(seconds=round(seconds, 3), workers=workers, rows_per_second=round(spec.rows / seconds))
        staged.commit(manifest)
    return manifest


def _merge(parts: list[SplitInfo], num_domains: int) -> SplitInfo:
    rows_per_domain = np.sum([p.rows_per_domain for p in parts], axis=0) if parts else np.zeros(num_domains)
    positives = np.sum([p.positives_per_domain for p in parts], axis=0) if parts else np.zeros(num_domains)
    return SplitInfo(rows=sum(p.rows for p in parts), rows_per_domain=[int(x) for x in rows_per_domain],
                     positives_per_domain=[int(x) for x in positives],
                     shards=[shard for p in parts for shard in p.shards])
