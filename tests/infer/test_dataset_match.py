"""evaluate / predict refuse a dataset not encoded like the model's training data, even when every
vocabulary has the size the model's tables have; the error names the first feature that differs."""
from __future__ import annotations

import pytest

from hamur_dist.data.manifest import load_manifest
from hamur_dist.data.validation import DataError
from hamur_dist.infer.evaluate import evaluate_model
from tests.infer.edits import edit_manifest


def sparse(data, name):
    return next(f for f in data["sparse"] if f["name"] == name)


def set_fingerprint(data, name, value):
    sparse(data, name)["fingerprint"] = value


# (change to the dataset's manifest, feature named, words in the message); every vocab size stays
SAME_SIZES_OTHER_ENCODING = {
    "vocabulary fingerprint": (lambda d: set_fingerprint(d, "item", "f" * 64), "item",
                               "vocabulary fingerprint: the dataset has 'ffff"),
    "fingerprint missing": (lambda d: set_fingerprint(d, "user", None), "user",
                            "vocabulary fingerprint: the dataset has None"),
    "hashed ids": (lambda d: sparse(d, "cat").update(hashed=True), "cat",
                   "hashed ids: the dataset has True, the model was trained with False"),
    "raw column": (lambda d: sparse(d, "item").update(source="item_title"), "item",
                   "raw column: the dataset has 'item_title', the model was trained with None"),
    "vocabulary file": (lambda d: d["source"]["vocab_files"].pop("cat"), "cat", "a vocabulary file"),
    "dense statistics": (lambda d: d["dense"][0]["params"].update(max=2.5), "x",
                         "scaling parameter 'max': the dataset has 2.5, the model was trained with 1.0"),
    "dense scaling": (lambda d: d["dense"][0].update(scaling="standard"), "x",
                      "scaling: the dataset has 'standard', the model was trained with 'minmax'"),
    "domain names": (lambda d: d["domain"]["names"].__setitem__(1, "search"), "domain",
                     "name of domain 1: the dataset has 'search', the model was trained with 'd1'"),
    "preparer": (lambda d: d["source"].update(preparer="synthetic"), None,
                 "preparer: the dataset has 'synthetic', the model was trained with 'table'"),
}


def test_the_training_dataset_itself_matches(artifact, tiny_root):
    report = evaluate_model(artifact.parent, tiny_root, "test")
    assert sum(d["count"] for d in report["domains"]) == load_manifest(tiny_root).splits["test"].rows


@pytest.mark.parametrize("case", list(SAME_SIZES_OTHER_ENCODING))
def test_same_sizes_other_encoding_is_refused(artifact, dataset, case):
    change, feature, words = SAME_SIZES_OTHER_ENCODING[case]
    edit_manifest(dataset, change)
    assert [f.vocab_size for f in load_manifest(dataset).sparse] == [200, 300, 12, 3]
    with pytest.raises(DataError) as err:
        evaluate_model(artifact, dataset)
    assert err.value.file == str(dataset / "manifest.json") and err.value.column == feature
    assert words in str(err.value) and str(artifact) in str(err.value)


def test_feature_order_and_names_are_compared(tiny_root):
    from hamur_dist.infer.dataset_match import input_encoding_difference

    trained = load_manifest(tiny_root)
    swapped = load_manifest(tiny_root)
    swapped.sparse[0], swapped.sparse[1] = swapped.sparse[1], swapped.sparse[0]
    assert input_encoding_difference(trained, swapped) == (
        "user", "sparse feature 0 of the model is feature 1 of the dataset (the model's inputs are positional)")
    renamed = load_manifest(tiny_root)
    renamed.dense[0].name = "x2"
    assert input_encoding_difference(trained, renamed) == (
        "x", "dense feature the model was trained with is missing from the dataset")
    assert input_encoding_difference(trained, load_manifest(tiny_root)) is None


def test_artifact_without_its_training_manifest_is_refused(model_copy, tiny_root):
    (model_copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="has no manifest.json .* cannot be checked"):
        evaluate_model(model_copy, tiny_root)


def test_predict_refuses_before_ray_and_the_cli_prints_one_line(artifact, dataset, tmp_path, capsys):
    from hamur_dist.cli import main
    from hamur_dist.infer.predict import predict

    edit_manifest(dataset, SAME_SIZES_OTHER_ENCODING["dense statistics"][0])
    with pytest.raises(DataError, match="scaling parameter 'max'") as err:
        predict(artifact, dataset, tmp_path / "scored")
    assert err.value.column == "x" and not (tmp_path / "scored").exists()
    assert main(["evaluate", "--model", str(artifact), "--data", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hamur evaluate: error:") and "column 'x'" in err and "Traceback" not in err
