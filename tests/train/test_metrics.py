"""Distributed metrics equal scikit-learn on the gathered predictions, per domain."""
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import log_loss, roc_auc_score

from hamur_dist.metrics import PredictionBuffer, domain_report, gather_predictions, gauc


def _data(seed=0, n=3000, domains=4):
    rng = np.random.default_rng(seed)
    # uneven domain sizes; domain 3 has a single class, domain 4 (if asked) none at all
    domain = rng.choice(domains, size=n, p=[0.6, 0.3, 0.08, 0.02][:domains])
    label = (rng.random(n) < 0.3 + 0.1 * domain).astype(np.float32)
    label[domain == 3] = 1.0
    prob = np.clip(0.5 * label + rng.random(n) * 0.6, 1e-4, 1 - 1e-4).astype(np.float32)
    prob = np.round(prob, 2)  # ties, to exercise tie handling
    user = rng.integers(0, 50, size=n)
    return prob, label, domain, user


def _expected(prob, label, domain, num_domains):
    out = []
    for d in range(num_domains):
        m = domain == d
        if m.sum() == 0 or len(np.unique(label[m])) < 2:
            out.append((int(m.sum()), None, log_loss(label[m], prob[m], labels=[0, 1]) if m.sum() else None))
        else:
            out.append((int(m.sum()), roc_auc_score(label[m], prob[m]), log_loss(label[m], prob[m])))
    return out


def test_domain_report_matches_sklearn_including_undefined_domains():
    prob, label, domain, user = _data()
    num_domains = 5  # domain 4 has no samples
    preds = {"prob": torch.tensor(prob), "label": torch.tensor(label), "domain": torch.tensor(domain),
             "user": torch.tensor(user)}
    report = domain_report(preds, num_domains)
    assert report["overall"]["auc"] == pytest.approx(roc_auc_score(label, prob), abs=1e-6)
    assert report["overall"]["logloss"] == pytest.approx(log_loss(label, prob), abs=1e-6)
    for entry, (count, auc, ll) in zip(report["domains"], _expected(prob, label, domain, num_domains)):
        assert entry["count"] == count
        if auc is None:
            assert entry["auc"] is None
        else:
            assert entry["auc"] == pytest.approx(auc, abs=1e-6)
        if ll is not None:
            assert entry["logloss"] == pytest.approx(ll, abs=1e-5)
    assert report["domains"][4]["count"] == 0 and report["domains"][4]["auc"] is None


def test_gauc_matches_brute_force():
    prob, label, _, user = _data(seed=1)
    total, weight = 0.0, 0
    for u in np.unique(user):
        m = user == u
        if len(np.unique(label[m])) == 2:
            total += roc_auc_score(label[m], prob[m]) * m.sum()
            weight += m.sum()
    assert gauc(prob, label, user) == pytest.approx(total / weight, abs=1e-9)
    assert gauc(prob[:1], label[:1], user[:1]) is None


def _worker(rank, world, port, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    prob, label, domain, user = _data(seed=2)
    # uneven shares per worker: rank r takes a differently sized contiguous slice
    cuts = [0, 400, 1900, 3000][: world + 1] if world == 3 else [0, 700, 3000]
    sl = slice(cuts[rank], cuts[rank + 1])
    buf = PredictionBuffer(with_user=True)
    buf.add(torch.tensor(prob[sl]), torch.tensor(label[sl]), torch.tensor(domain[sl]), torch.tensor(user[sl]))
    report = domain_report(gather_predictions(buf.tensors()), 4)
    torch.save(report, os.path.join(result_dir, f"r{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_gathered_metrics_are_exact_across_uneven_workers(tmp_path, world):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(world, port, str(tmp_path)), nprocs=world, join=True)
    prob, label, domain, user = _data(seed=2)
    for r in range(world):
        report = torch.load(tmp_path / f"r{r}.pt", weights_only=False)
        assert report["overall"]["count"] == 3000
        assert report["overall"]["auc"] == pytest.approx(roc_auc_score(label, prob), abs=1e-6)
        assert report["overall"]["gauc"] == pytest.approx(gauc(prob, label, user), abs=1e-9)
        for entry, (count, auc, _) in zip(report["domains"], _expected(prob, label, domain, 4)):
            assert entry["count"] == count
            assert (entry["auc"] is None) == (auc is None)
            if auc is not None:
                assert entry["auc"] == pytest.approx(auc, abs=1e-6)


def test_comparison_table_marks_new_domains_and_compares_overall_only_on_the_same_rows():
    from hamur_dist.metrics import comparison_table

    def report(aucs):
        return {"domains": [{"domain": d, "name": f"d{d}", "count": 10, "auc": a} for d, a in enumerate(aucs)],
                "overall": {"count": 10 * len(aucs), "auc": sum(aucs) / len(aucs)}}

    grown = comparison_table(report([0.7, 0.8, 0.9]), report([0.6, 0.8]))
    assert "| 0 | d0 | 10 | 0.7000 | 0.6000 | 0.1000 |" in grown
    assert "| 2 | d2 | 10 | 0.9000 | new domain |  |" in grown
    assert "| **all** | (other rows) | 30 | 0.8000 | 0.7000 |  |" in grown
    same = comparison_table(report([0.7, 0.8]), report([0.6, 0.8]))
    assert "| **all** |  | 20 | 0.7500 | 0.7000 | 0.0500 |" in same
