"""Whether a dataset continues another's encoding: the same, or grown (``prepare --like [--grow-vocab]
[--add-domains]``), so a model trained on the first can start training on the second.

Continuing means: the same features in the same order; each vocabulary equal, or the old one a prefix
of the new one (old values keep their ids); hashing unchanged; identity ids only more of them; dense
scaling unchanged; the old domains first, with their names. Vocabularies are compared value by value,
so the check holds whatever route the data took, not only for datasets with recorded lineage.
"""
from __future__ import annotations

from pathlib import Path

from hamur_dist.data.manifest import Manifest
from hamur_dist.data.vocabulary import read_vocabulary, vocab_path


def _vocab_prefix(old_root: Path, new_root: Path, feature) -> bool:
    old = read_vocabulary(old_root, feature.name).column("value")
    new = read_vocabulary(new_root, feature.name).column("value")
    return len(new) >= len(old) and new.slice(0, len(old)).equals(old)


def continuation_problem(old: Manifest, old_root: str | Path, new: Manifest, new_root: str | Path) -> str | None:
    """Why ``new`` does not continue ``old``'s encoding (one line), or None. ``old_root`` is the folder
    holding ``old``'s vocab/ (a dataset, or a model artifact)."""
    old_root, new_root = Path(old_root), Path(new_root)
    if [f.name for f in old.sparse] != [f.name for f in new.sparse]:
        return f"sparse features {[f.name for f in new.sparse]} differ from {[f.name for f in old.sparse]}"
    if [f.name for f in old.dense] != [f.name for f in new.dense]:
        return f"dense features {[f.name for f in new.dense]} differ from {[f.name for f in old.dense]}"
    for was, now in zip(old.sparse, new.sparse):
        if (was.multi_hot, was.width) != (now.multi_hot, now.width):
            return (f"sparse feature '{was.name}': multi_hot {now.multi_hot} max_len {now.max_len}, was "
                    f"{was.multi_hot} max_len {was.max_len} (another batch layout); prepare with --like")
        if was.fingerprint is not None and was.fingerprint == now.fingerprint:
            continue
        if now.vocab_size < was.vocab_size or was.hashed != now.hashed:
            return f"sparse feature '{was.name}': {now.vocab_size} ids{' hashed' * now.hashed}, was {was.vocab_size}"
        if was.hashed:
            return f"sparse feature '{was.name}' is hashed differently"
        if vocab_path(old_root, was.name).is_file():
            if not vocab_path(new_root, was.name).is_file() or not _vocab_prefix(old_root, new_root, was):
                return (f"sparse feature '{was.name}': the old vocabulary is not the start of the new one (old ids "
                        f"would mean other values); prepare the new logs with --like the old dataset")
    for was, now in zip(old.dense, new.dense):
        if (was.scaling, was.params) != (now.scaling, now.params):
            return (f"dense feature '{was.name}' is scaled {now.scaling} {now.params}, was {was.scaling} "
                    f"{was.params}; prepare the new logs with --like the old dataset")
    names = old.domain.names
    if new.domain.num_domains < old.domain.num_domains or new.domain.names[:len(names)] != names:
        return f"domains {new.domain.names} do not start with the old ones {names}"
    return None
