"""Whether a dataset is encoded the way a model's training data was: same features in the same
order, vocabularies (sizes, hashing, files, fingerprints where recorded), dense scaling and its
statistics, domains. Equal table sizes alone do not show it: each sparse feature's fingerprint
(``hamur_dist.data.vocabulary``) says what its ids mean.
"""
from __future__ import annotations

from hamur_dist.data.manifest import Manifest



def input_encoding_difference(trained: Manifest, data: Manifest) -> tuple[str | None, str] | None:
    """The first recorded way ``data`` encodes ids or dense values differently from ``trained`` (the
    model's training manifest), as (feature or column, how); None when nothing recorded differs.

    Equal sizes are not enough: two vocabularies of one size map different values to the same ids.
    Compared: sparse names and order, vocab sizes, hashing, raw source columns, multi_hot and max_len
    (the batch layout), vocabulary files and
    (where recorded) their fingerprints, dense names, scaling and its statistics, the domain column,
    count and names, and the preparer.
    """
    for check in (_sparse_difference, _dense_difference, _domain_difference, _preparer_difference):
        found = check(trained, data)
        if found is not None:
            return found
    return None


def _differs(what: str, have, want) -> str:
    return f"{what}: the dataset has {have!r}, the model was trained with {want!r}"


def _names_difference(kind: str, want: list[str], have: list[str]) -> tuple[str, str] | None:
    for name in want:
        if name not in have:
            return name, f"{kind} feature the model was trained with is missing from the dataset"
    for name in have:
        if name not in want:
            return name, f"{kind} feature the model was not trained with"
    for position, (w, h) in enumerate(zip(want, have)):
        if w != h:
            return w, (f"{kind} feature {position} of the model is feature {have.index(w)} of the dataset "
                       f"(the model's inputs are positional)")
    return None


def _source_value(manifest: Manifest, key: str):
    return manifest.source.get(key) if isinstance(manifest.source, dict) else None


def _source_map(manifest: Manifest, key: str) -> dict:
    value = _source_value(manifest, key)
    return value if isinstance(value, dict) else {}


def _sparse_difference(trained: Manifest, data: Manifest):
    found = _names_difference("sparse", [f.name for f in trained.sparse], [f.name for f in data.sparse])
    if found is not None:
        return found
    vocab_files = _source_map(trained, "vocab_files"), _source_map(data, "vocab_files")
    for want, have in zip(trained.sparse, data.sparse):
        for attr, what in (("vocab_size", "vocab_size"), ("hashed", "hashed ids"), ("source", "raw column"),
                           ("multi_hot", "multi_hot"), ("max_len", "max_len")):
            if getattr(want, attr) != getattr(have, attr):
                return want.name, _differs(what, getattr(have, attr), getattr(want, attr))
        if (want.name in vocab_files[0]) != (want.name in vocab_files[1]):
            return want.name, _differs("a vocabulary file", want.name in vocab_files[1], want.name in vocab_files[0])
        if want.fingerprint is not None and have.fingerprint != want.fingerprint:
            return want.name, _differs("vocabulary fingerprint", have.fingerprint, want.fingerprint)
    return None


def _dense_difference(trained: Manifest, data: Manifest):
    found = _names_difference("dense", [f.name for f in trained.dense], [f.name for f in data.dense])
    if found is not None:
        return found
    for want, have in zip(trained.dense, data.dense):
        if want.scaling != have.scaling:
            return want.name, _differs("scaling", have.scaling, want.scaling)
        for key in sorted(set(want.params) | set(have.params)):
            if want.params.get(key) != have.params.get(key):
                return want.name, _differs(f"scaling parameter '{key}'", have.params.get(key), want.params.get(key))
    return None


def _domain_difference(trained: Manifest, data: Manifest):
    want, have = trained.domain, data.domain
    if want.column != have.column:
        return want.column, _differs("domain column", have.column, want.column)
    if want.num_domains != have.num_domains:
        return want.column, _differs("num_domains", have.num_domains, want.num_domains)
    for index, (w, h) in enumerate(zip(want.names, have.names)):
        if w != h:
            return want.column, _differs(f"name of domain {index}", h, w)
    if len(want.names) != len(have.names):
        return want.column, _differs("domain names", have.names, want.names)
    return None


def _preparer_difference(trained: Manifest, data: Manifest):
    want, have = _source_value(trained, "preparer"), _source_value(data, "preparer")
    if want is not None and want != have:
        return None, _differs("preparer", have, want)
    return None
