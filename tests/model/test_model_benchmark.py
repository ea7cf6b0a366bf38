"""The step benchmark runs, and its naive (materialised) form computes what the factored form does."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "model_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("model_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_forms_agree_on_a_small_batch(bench):
    rows = {form: bench.run_case("ml1m", "mlp_hamur", form, batch=64, device="cpu", precision="fp32", steps=1)
            for form in ("paper", "reference", "naive")}
    assert rows["naive"]["loss"] == pytest.approx(rows["reference"]["loss"], rel=1e-5)
    assert rows["paper"]["params"] > rows["reference"]["params"] == rows["naive"]["params"]
    assert all(r["samples_per_s"] > 0 and r["peak_mb"] >= 0 for r in rows.values())
