"""The comparison's numbers on constructed cells: mean ± std, the leader per domain, the paired test."""
from __future__ import annotations

import csv
import io
import json

import pytest

from hamur_dist.compare.report import build_summary, csv_text, markdown, write_report
from hamur_dist.compare.stats import OVERALL, CellResult, lead, paired_p_value, summarize


def _test_report(d0: float, d1: float, overall: float) -> dict:
    entry = lambda d, name, auc: {"domain": d, "name": name, "count": 100, "positive_rate": 0.5,  # noqa: E731
                                  "auc": auc, "logloss": 0.6}
    return {"overall": {"count": 200, "positive_rate": 0.5, "auc": overall, "logloss": 0.6},
            "domains": [entry(0, "young", d0), entry(1, "old", d1)]}


def _cell(model: str, seed: int, d0: float, d1: float, overall: float | None = None, status="completed"):
    test = _test_report(d0, d1, overall if overall is not None else (d0 + d1) / 2) if status == "completed" else None
    return CellResult(model=model, seed=seed, status=status, test=test, best_val_auc=0.7 + seed / 100,
                      best_epoch=3, epochs_run=5, samples_per_s=1000.0 + seed, parameters=1234, run_dir=f"r/{model}/{seed}")


def test_paired_t_test_matches_the_hand_computed_value():
    # differences 0.010, 0.012, 0.008: mean 0.010, sd 0.002, t = 0.010 / (0.002 / sqrt 3) = 8.660, 2 df
    p = paired_p_value([0.81, 0.812, 0.808], [0.80, 0.80, 0.80])
    assert p == pytest.approx(0.01307, abs=2e-4)
    # differences +0.02, -0.01, +0.005: mean 0.005, sd 0.015, t = 0.577, p = 0.622
    assert paired_p_value([0.82, 0.79, 0.805], [0.80, 0.80, 0.80]) == pytest.approx(0.622, abs=1e-3)
    assert paired_p_value([0.8], [0.7]) is None                       # one pair: no test
    assert paired_p_value([0.8, 0.9], [0.7, 0.8]) == 0.0              # the same lead on every seed
    assert paired_p_value([0.8, 0.9], [0.8, 0.9]) == 1.0              # identical


def test_lead_is_beyond_noise_only_when_it_holds_on_every_seed():
    # d0 (young): A leads B by about 0.01 on every seed; d1 (old): B's mean is higher, but not on every seed
    by_model = {
        "A": [_cell("A", 0, 0.81, 0.70), _cell("A", 1, 0.812, 0.75), _cell("A", 2, 0.808, 0.72)],
        "B": [_cell("B", 0, 0.80, 0.74), _cell("B", 1, 0.80, 0.71), _cell("B", 2, 0.80, 0.77)],
    }
    young = lead(by_model, "young", "auc", alpha=0.05)
    assert (young.best, young.second, young.pairs) == ("A", "B", 3)
    assert young.difference == pytest.approx(0.01)
    assert young.beyond_noise and young.p_value == pytest.approx(0.01307, abs=2e-4)
    assert young.verdict(0.05).startswith("beyond noise")
    old = lead(by_model, "old", "auc", alpha=0.05)
    assert old.best == "B" and old.beyond_noise is False
    assert old.verdict(0.05).startswith("within noise")


def test_only_seeds_both_models_finished_are_paired():
    by_model = {"A": [_cell("A", 0, 0.81, 0.7), _cell("A", 1, 0.82, 0.7), _cell("A", 2, 0, 0, status="error: boom")],
                "B": [_cell("B", 0, 0.80, 0.7), _cell("B", 1, 0.80, 0.7), _cell("B", 2, 0.80, 0.7)]}
    result = lead(by_model, "young", "auc", 0.05)
    assert result.pairs == 2
    s = summarize(by_model["A"], "young", "auc")
    assert s.n == 2 and s.mean == pytest.approx(0.815) and s.std == pytest.approx(0.00707, abs=1e-5)
    single = lead({"A": by_model["A"]}, OVERALL, "auc", 0.05)
    assert single.second is None and single.verdict(0.05) == "only model"


def test_every_file_shows_the_same_numbers(tmp_path):
    cells = [_cell("A", s, 0.81 + s / 1000, 0.70) for s in range(3)] + \
            [_cell("B", s, 0.80, 0.72) for s in range(2)] + [_cell("B", 2, 0, 0, status="not run")]
    files = write_report(cells, tmp_path, "toy", 0.05, {"dataset": "/data/toy", "seeds": [0, 1, 2]})
    assert set(files) == {"comparison.md", "comparison.csv", "comparison.json", "comparison.png"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    summary = json.loads(files["comparison.json"].read_text())
    assert summary["scopes"] == ["young", "old", "all"]
    a_young = summary["models"]["A"]["test"]["young"]["auc"]
    assert a_young["mean"] == pytest.approx(0.811) and a_young["n"] == 3
    assert summary["models"]["B"]["completed"] == 2
    rows = list(csv.DictReader(io.StringIO(files["comparison.csv"].read_text())))
    row = next(r for r in rows if r["model"] == "A" and r["scope"] == "young" and r["metric"] == "auc")
    assert float(row["mean"]) == pytest.approx(0.811) and row["n"] == "3" and row["parameters"] == "1234"
    md = files["comparison.md"].read_text()
    assert "| A | 0.8110 ± 0.0010 |" in md
    assert "| young | A | B | +0.0110 | beyond noise" in md
    assert "| B | 2 | not run | 3 | – | r/B/2 |" in md
    assert md == markdown(build_summary(cells, "toy", 0.05, {"dataset": "/data/toy", "seeds": [0, 1, 2],
                                                              "machine": summary["machine"]}))
    assert csv_text(summary) == files["comparison.csv"].read_text()
