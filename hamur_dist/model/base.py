"""CTRModel: what every model in the library shares (inputs, embedding, routing, output).

    logits = model(sparse, dense, domain)     # (B, S) int64, (B, Dn) float, (B,) int64 -> (B,)

``sparse`` has one id column per single-valued feature and ``max_len`` columns (slots, -1 = padding)
per multi-valued one, in schema order (S = F without multi-valued features); the embedding module
pools the slots, so the model body always sees one vector per feature.

The embedding module (``model.embedding``) implements ``EmbeddingCollectionInterface``: by default a
plain ``EmbeddingCollection``; a pre-built one (e.g. sharded) with the same ``specs`` can be passed in.

``model.route_every_domain = True`` (evaluation only) swaps the routing for ``AllDomainsLayout``:
every domain's parameters run on every row, with no host sync or data-dependent shape, so the
model can be traced by ``torch.export`` (``hamur export``). Training always uses ``DomainLayout``.
"""
from __future__ import annotations

import torch
from torch import nn

from hamur_dist.data.manifest import FeatureSchema
from hamur_dist.model.config import ModelConfig
from hamur_dist.model.embedding import EmbeddingCollection, EmbeddingCollectionInterface, TableSpec, pooled_feature
from hamur_dist.model.routing import AllDomainsLayout, DomainLayout


def embedding_specs(cfg: ModelConfig, schema: FeatureSchema) -> list[TableSpec]:
    """The tables a model built from (cfg, schema) needs, in schema order.

    ``per_domain`` (one model per domain) keeps a private copy of every table for each domain,
    stored as one table of ``vocab_size * num_domains`` rows (domain d owns rows d*vocab..).
    """
    copies = schema.num_domains if cfg.name == "per_domain" else 1
    # single-valued tables keep the default pooling (unused): their specs do not depend on the config
    return [TableSpec(f.name, f.vocab_size * copies, cfg.embed_dim, max_len=getattr(f, "max_len", 1),
                      **({"pooling": cfg.multi_hot_pooling, "multi_hot": True} if pooled_feature(f) else {}))
            for f in schema.sparse]


class CTRModel(nn.Module):
    """Base class. Subclasses implement ``body(sparse_emb, dense, layout) -> logits`` on rows sorted
    by domain (``layout``); this class validates inputs, embeds, sorts and restores the order."""

    route_every_domain = False   # True: AllDomainsLayout (eval / export), see the module docstring

    def __init__(self, cfg: ModelConfig, schema: FeatureSchema,
                 embedding: EmbeddingCollectionInterface | None = None):
        super().__init__()
        if not schema.sparse:
            raise ValueError("the feature schema has no sparse features; every model needs at least one")
        if schema.num_domains < 1:
            raise ValueError(f"the feature schema has num_domains={schema.num_domains}; need >= 1")
        self.cfg = cfg
        self.schema = schema
        self.num_domains = schema.num_domains
        self.num_sparse = len(schema.sparse)
        self.num_slots = sum(getattr(f, "max_len", 1) for f in schema.sparse)    # id columns of `sparse`
        self.num_dense = len(schema.dense)
        expected = embedding_specs(cfg, schema)
        if embedding is None:
            embedding = EmbeddingCollection(expected, init_std=cfg.embed_init_std)
        elif not isinstance(embedding, EmbeddingCollectionInterface):
            raise TypeError(f"the embedding module must subclass EmbeddingCollectionInterface "
                            f"(hamur_dist.model.embedding), as EmbeddingCollection and "
                            f"ShardedEmbeddingCollection do; got {type(embedding).__name__}")
        elif list(embedding.specs) != expected:
            raise ValueError(f"the embedding module's tables do not match the schema: expected "
                             f"{expected}, got {list(embedding.specs)} "
                             f"(build it from model.embedding_specs(cfg, schema))")
        self.embedding = embedding
        self.sparse_dim = self.num_sparse * cfg.embed_dim
        self.input_dim = self.sparse_dim + self.num_dense      # the instance vector e
        self.reference = cfg.hamur.mode == "reference"

    # --- subclasses ------------------------------------------------------------------------
    def body(self, sparse_emb: torch.Tensor, dense: torch.Tensor, layout: DomainLayout) -> torch.Tensor:
        """(B, F*E) flattened embeddings and (B, Dn) dense values, sorted by domain -> (B,) logits."""
        raise NotImplementedError

    def lookup(self, sparse: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """(B, S) ids -> (B, F*E); overridden by models with per-domain tables."""
        return self.embedding(sparse).flatten(1)

    @property
    def needs_batch_statistics(self) -> bool:
        """True when outputs are normalised with whole-batch statistics (reference-mode adapter norm)."""
        hamur = getattr(self, "hamur", None)
        return hamur is not None and hamur.needs_batch_statistics

    # --- shared ------------------------------------------------------------------------------
    @staticmethod
    def instance_vector(sparse_emb: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.cat([sparse_emb, dense], dim=1) if dense.shape[1] else sparse_emb

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        self._check_inputs(sparse, dense, domain)
        batch = sparse.shape[0]
        if batch == 0:
            return dense.new_zeros(0)
        if batch < 2 and self.needs_batch_statistics:
            raise ValueError("model.hamur.mode=reference (adapter_norm whole_batch) normalises adapter outputs "
                             "with whole-batch statistics, which a batch of one row does not have (the "
                             "reference code returns NaN); batch at least 2 rows or use model.hamur.mode=paper")
        if self.route_every_domain:
            if self.training:
                raise RuntimeError("route_every_domain is for evaluation and export (in training, BatchNorm "
                                   "would pool every domain's rows); call model.eval() first")
            layout = AllDomainsLayout(domain, self.num_domains)
        else:
            layout = DomainLayout(domain, self.num_domains)
        sparse, dense = layout.sort(sparse), layout.sort(dense)
        sparse_emb = self.lookup(sparse, layout.domain)
        logits = self.body(sparse_emb, dense.to(sparse_emb.dtype), layout)
        return layout.restore(logits)

    def _check_inputs(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> None:
        if sparse.dim() != 2 or sparse.shape[1] != self.num_slots:
            slots = " with max_len columns per multi-valued one" if self.num_slots != self.num_sparse else ""
            raise ValueError(f"sparse must have shape (B, {self.num_slots}) (features {self.schema.sparse_names}"
                             f"{slots}), got {tuple(sparse.shape)}")
        if sparse.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"sparse ids must be int64, got {sparse.dtype}")
        if dense.dim() != 2 or dense.shape[1] != self.num_dense or dense.shape[0] != sparse.shape[0]:
            raise ValueError(f"dense must have shape ({sparse.shape[0]}, {self.num_dense}) "
                             f"(features {self.schema.dense_names}), got {tuple(dense.shape)}")
        if domain.shape != (sparse.shape[0],):
            raise ValueError(f"domain must have shape ({sparse.shape[0]},), got {tuple(domain.shape)}")


def select_domain_output(outputs: torch.Tensor, layout: DomainLayout) -> torch.Tensor:
    """outputs (B, D): every tower's logit for every row -> each row's own domain's logit."""
    return outputs.gather(1, layout.domain.unsqueeze(1)).squeeze(1)
