"""The GPU path: tables, exchange (NCCL, a 1-rank group so one GPU runs the real all-to-all) and
optimiser on CUDA give the unsharded CPU reference's numbers; checkpoints load back on CPU."""
import pytest
import torch
import torch.distributed as dist

from tests.embedding import sharded_helpers as h
from hamur_dist.embedding import SparseRowOptimizer, assemble_full_state, load_shards, save_shard

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not dist.is_nccl_available(),
                                reason="needs a CUDA GPU and NCCL")


def test_cuda_nccl_lookup_training_and_checkpoint(tmp_path):
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{h._free_port()}", rank=0, world_size=1,
                            device_id=torch.device("cuda:0"))
    try:
        emb = h.build(0, 1, device="cuda")
        assert not emb.exchanger.local_only and emb.local_weight.is_cuda
        ref = h.reference_collection()
        outs = h.reference_backward(ref, 0, 1)
        batch = h.global_batch(0, 1)[0]
        out = emb(batch.cuda())
        torch.testing.assert_close(out.cpu(), outs[0], atol=1e-6, rtol=0)
        (out * h.loss_weights(0, batch, 0).cuda()).sum().backward()
        for name, (ids, grads) in emb.sparse_grads().items():
            torch.testing.assert_close(grads.cpu(), ref.tables[name].weight.grad[ids.cpu()], atol=1e-6, rtol=0)
        emb.clear_grads()
        for table in emb.tables.values():
            table.weight.grad = None

        opt = SparseRowOptimizer(emb, h.TRAIN["kind"], lr=h.TRAIN["lr"], weight_decay=h.TRAIN["wd"])
        h.train_steps(emb, opt, range(4))
        ref, _ = h.reference_training(range(4), lambda step: 1)
        for spec in h.SPECS:
            torch.testing.assert_close(emb.local_table(spec.name).cpu(), ref.tables[spec.name].weight.detach(),
                                       atol=1e-5, rtol=1e-4)
        assert emb.exchanger.bytes_sent == 0      # one rank: nothing leaves it
        save_shard(emb, opt, tmp_path)
    finally:
        dist.destroy_process_group()
    full = assemble_full_state(tmp_path)
    cpu = h.build(0, 1)
    load_shards(cpu, None, tmp_path)
    for spec in h.SPECS:
        assert torch.equal(cpu.local_table(spec.name), full[f"tables.{spec.name}.weight"])


def test_cuda_replicated_sparse_training_and_gradient_exchange():
    from hamur_dist.embedding.exchange import Exchanger, all_gather_row_sums
    from tests.embedding import replicated_helpers as rh

    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{h._free_port()}", rank=0, world_size=1,
                            device_id=torch.device("cuda:0"))
    try:
        emb = h.build(0, 1, rh.CONFIG, device="cuda")
        opt = rh.make_optimizer(emb)
        h.train_steps(emb, opt, range(4))
        ref, _ = h.reference_training(range(4), lambda step: 1)
        for spec in h.SPECS:
            torch.testing.assert_close(emb.local_table(spec.name).cpu(), ref.tables[spec.name].weight.detach(),
                                       atol=1e-5, rtol=1e-4)
        # the exchange itself over NCCL (a 1-rank group: the collection skips it for one worker)
        exchanger = Exchanger(0, 1, None, torch.device("cuda"))
        rows = torch.tensor([1, 4, 7], device="cuda")
        grads = torch.randn(3, 4, device="cuda")
        union, summed = all_gather_row_sums(exchanger, rows, grads, scale=0.5)
        assert torch.equal(union, rows)
        torch.testing.assert_close(summed, grads * 0.5)
    finally:
        dist.destroy_process_group()
