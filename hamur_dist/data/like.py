"""``hamur prepare ... --like DATASET``: encode new logs the way an existing dataset was encoded.

The parent's vocabularies, dense statistics, domain mapping and feature list are frozen: unknown
values become id 0 (counted per feature), an unknown domain is a bad row. A multi_hot feature keeps
the parent's max_len: longer lists are cut (counted in the manifest's ``source["truncated_lists"]``).
``grow_vocab`` appends values not seen before after the existing ids (every old id keeps its row);
``add_domains`` gives new domain values new ids after the old ones. The new manifest records its lineage.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from hamur_dist import config_loader
from hamur_dist.config_loader import ConfigError
from hamur_dist.data.manifest import MANIFEST_NAME, SCHEMA_KEY, Manifest, load_manifest
from hamur_dist.data.table_schema import DomainSpec, TableSchema, load_table_schema
from hamur_dist.data.vocabulary import read_vocabulary
from hamur_dist.fileio import sha256_file

@dataclass
class Parent:
    """The dataset new data is encoded like, and how far the encoding may change."""
    root: Path
    manifest: Manifest
    manifest_sha256: str
    grow_vocab: bool = False
    add_domains: bool = False

    def vocabulary(self, feature: str):
        spec = next(f for f in self.manifest.sparse if f.name == feature)
        return read_vocabulary(self.root, feature, spec.fingerprint)

    def feature(self, name: str):
        return next((f for f in self.manifest.sparse if f.name == name), None)

    def dense(self, name: str):
        return next((f for f in self.manifest.dense if f.name == name), None)


def load_parent(like: str | Path, grow_vocab: bool = False, add_domains: bool = False,
                preparer: str | None = None) -> Parent:
    root = Path(like).expanduser().absolute()
    manifest = load_manifest(root)
    made_by = manifest.source.get("preparer")
    if preparer is not None and made_by != preparer:
        raise ConfigError(f"--like {like}: that dataset was made by the '{made_by}' preparer, not '{preparer}'")
    return Parent(root, manifest, sha256_file(root / MANIFEST_NAME), grow_vocab, add_domains)


# --- the table schema, recorded in the manifest so a dataset can be reproduced on new logs -----------
def schema_record(schema: TableSchema) -> dict:
    """The schema as JSON-safe data (a domain mapping as [raw value, id] pairs: JSON keys are strings)."""
    data = config_loader.to_dict(schema)
    data["domain"]["mapping"] = [[k, v] for k, v in schema.domain.mapping.items()]
    return data


def schema_from_record(record: dict, where: str) -> TableSchema:
    data = copy.deepcopy(record)
    data["domain"]["mapping"] = {k: v for k, v in data["domain"].get("mapping", [])}
    try:
        return load_table_schema(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: the recorded table schema does not load ({exc})") from None


def parent_schema(parent: Parent) -> TableSchema:
    record = parent.manifest.source.get(SCHEMA_KEY)
    if not isinstance(record, dict):
        raise ConfigError(f"--like {parent.root}: its manifest records no table schema (prepared before --like "
                          "existed?); prepare it again with this version")
    return schema_from_record(record, str(parent.root / MANIFEST_NAME))


def check_same_features(parent: Parent, schema: TableSchema) -> None:
    """The new schema must read and encode the same features the same way as the parent's."""
    old = parent_schema(parent)
    for kind in ("sparse", "dense"):
        want = [(f.name, f.source) for f in getattr(old, kind)]
        have = [(f.name, f.source) for f in getattr(schema, kind)]
        if want != have:
            raise ConfigError(f"--like {parent.root}: {kind} features {have} differ from the dataset's {want}")
    for want, have in zip(old.sparse, schema.sparse):
        if (want.encoding, want.buckets) != (have.encoding, have.buckets):
            raise ConfigError(f"--like {parent.root}: sparse feature '{want.name}' is encoded "
                              f"{have.encoding} here, {want.encoding} in the dataset")
        if want.multi_hot != have.multi_hot:
            raise ConfigError(f"--like {parent.root}: sparse feature '{want.name}' is "
                              f"{'multi' if have.multi_hot else 'single'}-valued here, "
                              f"{'multi' if want.multi_hot else 'single'}-valued in the dataset")
    for want, have in zip(old.dense, schema.dense):
        if want.scaling != have.scaling:
            raise ConfigError(f"--like {parent.root}: dense feature '{want.name}' is scaled {have.scaling} here, "
                              f"{want.scaling} in the dataset")
    if (old.label.column, old.label.threshold, old.user) != (schema.label.column, schema.label.threshold, schema.user):
        raise ConfigError(f"--like {parent.root}: label or user column differs from the dataset's")


def like_schema(parent: Parent, schema: TableSchema | None) -> TableSchema:
    """The schema to prepare new data with: the parent's (or ``schema``, checked to match it), with
    the parent's domain mapping unless domains may be added."""
    old = parent_schema(parent)
    if schema is None:
        return old
    check_same_features(parent, schema)
    if not parent.add_domains:
        schema.domain = old.domain
    else:
        check_extends(old.domain, schema.domain, parent.root)
    return schema


def check_extends(old: DomainSpec, new: DomainSpec, root) -> None:
    """A domain spec given with --add-domains keeps every old domain's id and name."""
    if old.bins or new.bins:
        raise ConfigError(f"--add-domains: domains given by bins cannot grow (dataset {root}); use a mapping")
    for key, domain in old.mapping.items():
        if new.mapping.get(key) != domain:
            raise ConfigError(f"--add-domains: domain value {key!r} has id {domain} in {root}, "
                              f"{new.mapping.get(key)} here: old domains must keep their ids")
    if new.count < old.count or (old.names and new.names and new.names[:len(old.names)] != old.names):
        raise ConfigError(f"--add-domains: the domains of {root} ({old.names}) must come first, unchanged")


def grown_domains(spec: DomainSpec, observed: list) -> DomainSpec:
    """``spec`` with every observed raw value it does not map given a new id (in sorted order)."""
    spec = copy.deepcopy(spec)
    names = list(spec.names) or [f"domain{i}" for i in range(spec.count)]
    if spec.mapping:
        new = sorted(v for v in set(observed) if v not in spec.mapping)
        for value in new:
            spec.mapping[value] = spec.count
            names.append(str(value))
    elif not spec.bins:
        top = max([int(v) for v in observed] + [spec.num_domains - 1])
        names += [f"domain{i}" for i in range(spec.num_domains, top + 1)]
        spec.num_domains = top + 1
    spec.names = names
    return spec


def lineage(parent: Parent, manifest: Manifest) -> dict:
    """What the new dataset inherited from its parent and what changed."""
    grown = {}
    for feature in manifest.sparse:
        old = parent.feature(feature.name)
        if old is not None and old.vocab_size != feature.vocab_size:
            grown[feature.name] = [old.vocab_size, feature.vocab_size]
    old_names = parent.manifest.domain.names
    return {"parent": str(parent.root), "parent_name": parent.manifest.name,
            "parent_manifest_sha256": parent.manifest_sha256,
            "vocabularies": "grown" if parent.grow_vocab else "frozen",
            "grown": grown, "added_domains": manifest.domain.names[len(old_names):],
            "parent_num_domains": parent.manifest.domain.num_domains}
