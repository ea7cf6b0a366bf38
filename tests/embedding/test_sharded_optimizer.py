"""The row-sparse optimiser: against torch's sparse optimisers where semantics coincide, the lazy
per-row rules, and multi-process training equal to the same optimiser on unsharded tables."""
import pytest
import torch
from torch import nn

from tests.embedding import sharded_helpers as h
from hamur_dist.config import EmbeddingConfig
from hamur_dist.embedding import ShardedEmbeddingCollection, SparseRowOptimizer, plan_sharding
from hamur_dist.model.embedding import TableSpec

SPECS = [TableSpec("a", 30, 4), TableSpec("b", 8, 4)]


def _single(specs=SPECS):
    return ShardedEmbeddingCollection(specs, plan_sharding(specs, 1, EmbeddingConfig(sharding="row_wise")), 0, 1,
                                      init_seed=1)


def _torch_tables(emb, specs=SPECS):
    tables = {s.name: nn.Embedding(s.num_rows, s.dim, sparse=True) for s in specs}
    with torch.no_grad():
        for name, t in tables.items():
            t.weight.copy_(emb.local_table(name))
    return tables


def _steps(emb, opt, tables, torch_opt, batches):
    for ids in batches:
        w = torch.randn(ids.shape[0], ids.shape[1], 4)
        (emb(ids) * w).sum().backward()
        opt.step()
        torch_opt.zero_grad()
        out = torch.stack([tables[s.name](ids[:, i]) for i, s in enumerate(SPECS)], 1)
        (out * w).sum().backward()
        torch_opt.step()


def test_adagrad_equals_torch_sparse_adagrad():
    torch.manual_seed(0)
    emb = _single()
    tables = _torch_tables(emb)
    opt = SparseRowOptimizer(emb, "adagrad", lr=0.1)
    torch_opt = torch.optim.Adagrad([t.weight for t in tables.values()], lr=0.1)
    batches = [torch.stack([torch.randint(0, s.num_rows, (6,)) for s in SPECS], 1) for _ in range(5)]
    _steps(emb, opt, tables, torch_opt, batches)
    for name, t in tables.items():
        torch.testing.assert_close(emb.local_table(name), t.weight.detach(), atol=1e-6, rtol=1e-5)
    assert not torch.equal(emb.local_table("a"), _single().local_table("a"))   # it did train


def test_adam_equals_sparse_adam_when_every_row_is_touched():
    torch.manual_seed(0)
    specs = [TableSpec("a", 8, 4), TableSpec("b", 8, 4)]
    emb = _single(specs)
    tables = _torch_tables(emb, specs)
    opt = SparseRowOptimizer(emb, "adam", lr=0.05)
    torch_opt = torch.optim.SparseAdam([t.weight for t in tables.values()], lr=0.05)
    # every id of both tables in every batch: per-row step counts == the global step count
    batches = [torch.stack([torch.randperm(8), torch.randperm(8)], 1).repeat(2, 1) for _ in range(5)]
    _steps(emb, opt, tables, torch_opt, batches)
    for name, t in tables.items():
        torch.testing.assert_close(emb.local_table(name), t.weight.detach(), atol=1e-6, rtol=1e-5)


def test_lazy_adam_uses_per_row_step_counts_and_leaves_untouched_rows():
    emb = _single()
    opt = SparseRowOptimizer(emb, "adam", lr=0.01)
    before = emb.local_table("a").clone()
    for _ in range(5):                                   # train row 0 of table a for 5 steps
        emb(torch.tensor([[0, 0]]))[:, 0].sum().backward()
        opt.step()
    emb(torch.tensor([[7, 0]]))[:, 0].sum().backward()   # row 7 is seen for the first time
    opt.step()
    a = emb.local_table("a")
    # bias-corrected with its own count (1): the first Adam step moves by lr (grad sign), not less
    torch.testing.assert_close(before[7] - a[7], torch.full((4,), 0.01), atol=1e-6, rtol=0)
    assert opt.table_state("a")["step"].tolist()[:8] == [5, 0, 0, 0, 0, 0, 0, 1]
    torch.testing.assert_close(a[1:7], before[1:7], atol=0, rtol=0)          # untouched rows: untouched
    assert torch.count_nonzero(opt.table_state("a")["exp_avg"][1:7]) == 0
    assert opt.step() == 0                                                    # gradients were consumed


def test_state_dict_round_trip_and_kind_check():
    emb = _single()
    opt = SparseRowOptimizer(emb, "adam", lr=0.01)
    emb(torch.tensor([[3, 1]])).sum().backward()
    opt.step()
    again = SparseRowOptimizer(emb, "adam", lr=0.01)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.state["exp_avg_sq"], opt.state["exp_avg_sq"])
    with pytest.raises(ValueError, match="is for 'adam'"):
        SparseRowOptimizer(emb, "adagrad", lr=0.01).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="kind must be one of"):
        SparseRowOptimizer(emb, "sgd")


def test_from_config_reads_sparse_lr_and_weight_decay():
    from hamur_dist.config import TrainConfig
    opt = SparseRowOptimizer.from_config(_single(), EmbeddingConfig(sparse_optimizer="adagrad"),
                                         TrainConfig(lr=0.3, weight_decay=0.01))
    assert (opt.kind, opt.hparams["lr"], opt.hparams["weight_decay"]) == ("adagrad", 0.3, 0.01)
    opt = SparseRowOptimizer.from_config(_single(), EmbeddingConfig(sparse_lr=0.05), TrainConfig(optimizer="adamw"))
    assert opt.hparams["lr"] == 0.05 and opt.hparams["decoupled_weight_decay"]


def test_training_matches_unsharded_reference_two_ranks():
    trains = [dict(h.TRAIN), dict(h.TRAIN, kind="adagrad", lr=0.1), dict(h.TRAIN, decoupled=True, wd=0.1)]
    h.run_ranks(h.check_training, 2, trains)


def test_training_matches_unsharded_reference_three_ranks():
    h.run_ranks(h.check_training, 3, [dict(h.TRAIN)])


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc/self/status")
def test_optimiser_state_costs_memory_only_for_rows_written():
    from hamur_dist.embedding.optimizer import lazy_zeros

    def private_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024

    start = private_mb()
    state = lazy_zeros((1_000_000, 64), torch.float32, torch.device("cpu"))   # 256 MB of zeros
    assert private_mb() - start < 16
    state[::1000] = 1.0                        # 1,000 rows, one 4 KiB page each
    written = private_mb() - start
    assert 2 < written < 40, written
    assert float(state.sum()) == 1000 * 64     # reads every page, as torch.save does at a checkpoint
    assert private_mb() - start < written + 16, "reading rows never written made them resident"
