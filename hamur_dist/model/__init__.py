"""The model library: plain PyTorch (never imports Ray).

    model = build_model(cfg.model, manifest.schema)       # -> CTRModel
    logits = model(sparse, dense, domain)                  # (B, F) int64, (B, Dn) float, (B,) int64 -> (B,)
    model.embedding                                        # the sparse tables (an EmbeddingCollectionInterface)

``model.name``: the backbones (``mlp`` per-domain towers, ``shared_bottom``, ``wide_deep``, ``dcn``,
``dcn_v2``; HAMUR adapters plug into any of their hidden layers with ``model.hamur.enabled``) and
the baselines (``per_domain``, ``star``, ``mmoe``, ``ple``). ``model.hamur.mode`` picks the paper's
behaviour or the reference code's (see ``backbones`` and ``hamur``). A pre-built embedding module (any
``EmbeddingCollectionInterface``, e.g. ``hamur_dist.embedding.ShardedEmbeddingCollection``) can be
passed to ``build_model``; it must hold the tables ``embedding_specs(cfg, schema)`` lists.
"""
from hamur_dist.model.base import CTRModel, embedding_specs
from hamur_dist.model.build import MODELS, build_model, count_parameters
from hamur_dist.model.config import BACKBONES, BASELINES, HamurConfig, ModelConfig
from hamur_dist.model.embedding import EmbeddingCollection, EmbeddingCollectionInterface, TableSpec

__all__ = ["BACKBONES", "BASELINES", "CTRModel", "EmbeddingCollection", "EmbeddingCollectionInterface",
           "HamurConfig", "MODELS", "ModelConfig", "TableSpec", "build_model", "count_parameters",
           "embedding_specs"]
