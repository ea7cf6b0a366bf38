"""`hamur prepare ...` end to end: the summary it prints, and one-line errors for bad input."""
from __future__ import annotations

from hamur_dist.cli import main
from hamur_dist.data.validation import verify_dataset


def test_prepare_synthetic_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "syn"
    code = main(["prepare", "synthetic", "--out", str(out), "--rows", "3000", "--shard-rows", "1000",
                 "--workers", "1", "--vocab-sizes", "100,1e4", "--num-dense", "2", "--domain-weights", "1,1,2"])
    text = capsys.readouterr().out
    assert code == 0
    m = verify_dataset(out)
    assert [f.vocab_size for f in m.sparse] == [100, 10_000, 4] and len(m.dense) == 2
    assert "prepared synthetic" in text and "3,000 rows" in text and "rows/s" in text
    assert "train" in text and "2,400" in text and "pos.rate" in text


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("y,d,a\n1,0,5\n7,1,6\n")
    (tmp_path / "s.yaml").write_text("name: t\nlabel: y\ndomain: {column: d, num_domains: 2}\nsparse: [a]\n")
    code = main(["prepare", "table", "--schema", str(tmp_path / "s.yaml"), "--source", str(tmp_path / "in.csv"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("hamur prepare: error:") and "in.csv, row 1, column 'y': label outside {0,1}: 7.0" in err
    assert not (tmp_path / "out").exists()
    code = main(["prepare", "movielens-1m", "--out", str(tmp_path / "m"), "--rows", "5"])
    assert code == 2 and "unknown option(s) ['rows']" in capsys.readouterr().err
