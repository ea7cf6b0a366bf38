"""The RayJobs' entrypoints: each runs a hamur subcommand whose arguments the real CLI parses, names
configs that exist and load, and writes to the shared volume."""
from __future__ import annotations

import re
import shlex

import pytest

from tests.deploy.deploy_paths import DEPLOY_DOC, REPO
from tests.deploy.rendered_objects import (OVERLAYS, TRAINING_SCRIPTS, entrypoint, groups, jobs_in, pvc_names,
                                           shared_mounts)

STORAGE_OVERRIDES = ("run.storage_path", "data.path")
# path options of the subcommands (prepare, predict, ...): read or written by the pods
PATH_OPTIONS = ("model", "data", "source", "out", "resume")


def parsed_args(job: dict, where: str):
    """The entrypoint's arguments as the real ``hamur`` parser reads them (a Namespace)."""
    from hamur_dist import cli
    sub = entrypoint(job)[0][len("jobs/"):-len(".py")]
    try:
        return cli.build_parser().parse_args([sub, *shlex.split(job["spec"]["entrypoint"])[2:]])
    except SystemExit:
        pytest.fail(f"{where}: `hamur {sub}` rejects the entrypoint's arguments")


def test_entrypoints_name_jobs_scripts_of_cli_subcommands(rendered_jobs):
    from hamur_dist.cli import SUBCOMMANDS
    for name, job in rendered_jobs:
        script, config, _ = entrypoint(job)
        where = f"{name}/{job['metadata']['name']}"
        assert re.fullmatch(r"jobs/\w+\.py", script) and (REPO / script).is_file(), f"{where}: {script}"
        assert script[len("jobs/"):-len(".py")] in SUBCOMMANDS, f"{where}: {script} is no hamur subcommand"
        # the RayJob hamur-X (component X) runs jobs/X.py
        assert job["metadata"]["name"] == f"hamur-{script[len('jobs/'):-len('.py')]}" \
            == f"hamur-{job['metadata']['labels']['app.kubernetes.io/component']}", where
        args = parsed_args(job, where)
        if hasattr(args, "config"):       # train / tune / compare: an experiment, search or comparison config
            assert config and config.startswith("configs/") and config.endswith(".yaml"), f"{where}: --config {config}"
        else:                             # prepare / predict: paths; the output must be on the shared volume
            assert (args.out or "").startswith("/mnt/hamur/"), f"{where}: --out {args.out!r} not on the shared volume"


def config_paths_named(rendered) -> set[str]:
    named = {entrypoint(job)[1] for _, job in jobs_in(rendered)} - {None}
    named |= set(re.findall(r"\bconfigs/[\w/.-]+\.yaml", DEPLOY_DOC.read_text()))
    return named


def test_every_config_named_in_a_manifest_or_the_docs_exists(rendered):
    missing = sorted(p for p in config_paths_named(rendered) if not (REPO / p).is_file())
    assert not missing, f"config files named by k8s/ or docs/deploy.md do not exist: {missing}"


def test_paths_in_the_docs_exist():
    text = DEPLOY_DOC.read_text()
    named = set(re.findall(r"\b(?:jobs/\w+\.py|k8s/[\w/.-]*\w)", text))
    assert named, "docs/deploy.md names no jobs/ script or k8s/ path"
    assert sorted(p for p in named if not (REPO / p).exists()) == []


def test_results_and_data_live_on_shared_storage(rendered, rendered_jobs):
    """A relative or pod-local storage_path would leave each node's checkpoints on its own disk, and a
    pod-local --data / --model / --out each pod's reads or scores on its own."""
    for name, job in rendered_jobs:
        where = f"{name}/{job['metadata']['name']}"
        script, _, overrides = entrypoint(job)
        values = dict(o.split("=", 1) for o in overrides)
        if script in TRAINING_SCRIPTS:
            assert "run.storage_path" in values, f"{where}: set run.storage_path to the shared volume or a URI"
        mounts = [shared_mounts(g["template"]["spec"], pvc_names(rendered[name])) for _, g in groups(job)]
        args = vars(parsed_args(job, where))
        options = {f"--{k}": args.get(k) for k in PATH_OPTIONS if isinstance(args.get(k), str)}
        for key, value in [(k, values.get(k)) for k in STORAGE_OVERRIDES] + list(options.items()):
            if value is None or re.match(r"^[a-z][a-z0-9+.-]*://", value):
                continue          # unset (data.path: the config's own) or a URI / URL
            assert value.startswith("/"), f"{where}: {key}={value} must be absolute"
            for m in mounts:
                assert any(value == p or value.startswith(p.rstrip("/") + "/") for p in m), \
                    f"{where}: {key}={value} is not on the shared volume in every pod"


def test_entrypoint_arguments_parse_with_the_hamur_cli(rendered_jobs):
    from hamur_dist import cli
    parser = cli.build_parser()
    built = set(parser._subparsers._group_actions[0].choices)   # argparse keeps subparsers here
    assert rendered_jobs, "no RayJob rendered"
    for name, job in rendered_jobs:
        script, _, _ = entrypoint(job)
        sub = script[len("jobs/"):-len(".py")]
        assert sub in built, f"{name}/{job['metadata']['name']}: `hamur {sub}` is not a subcommand of the CLI"
        parsed_args(job, f"{name}/{job['metadata']['name']}")


def test_entrypoint_overrides_are_experiment_config_keys(rendered_jobs):
    """Experiment configs (not configs/tune/) with the overrides load: every key exists and types fit.
    A comparison (configs/compare/) loads as `hamur compare` loads it: the overrides apply to every
    cell, and every (model, seed) cell is resolved and validated."""
    to_check = [entrypoint(job)[1:] for _, job in rendered_jobs]
    to_check = [(c, o) for c, o in to_check if c and not c.startswith("configs/tune/")]
    assert to_check, "no RayJob runs an experiment config"
    assert any(c.startswith("configs/compare/") for c, _ in to_check), "no RayJob runs a comparison"
    from hamur_dist.compare.config import load_comparison
    from hamur_dist.config import load_experiment
    for config, overrides in to_check:
        assert (REPO / config).is_file(), f"{config} (named by a RayJob) does not exist"
        if config.startswith("configs/compare/"):
            assert load_comparison(REPO / config, overrides).cells, f"{config}: no models"
        else:
            load_experiment(REPO / config, overrides)


def test_comparisons_write_to_the_shared_volume_and_train_where_the_overlay_says(rendered_jobs):
    """`hamur compare` puts its experiment folder (every cell's run, the tables, the compare.yaml a
    --resume reads) under run.storage_path, and refuses a URI there; the gpu overlay's cells, and
    only they, train on GPUs."""
    from hamur_dist.compare.config import load_comparison
    from hamur_dist.compare.driver import experiment_dir_for
    jobs = [(name, job) for name, job in rendered_jobs if entrypoint(job)[0] == "jobs/compare.py"]
    assert sorted(name for name, _ in jobs) == OVERLAYS, "every kustomization renders the comparison RayJob"
    for name, job in jobs:
        where = f"{name}/{job['metadata']['name']}"
        _, config, overrides = entrypoint(job)
        comparison = load_comparison(REPO / config, overrides)
        folder = experiment_dir_for(comparison, config)     # ConfigError for a URI
        storage = dict(o.split("=", 1) for o in overrides)["run.storage_path"]
        assert str(folder.parent) == storage and storage.startswith("/mnt/hamur/"), f"{where}: {folder}"
        use_gpu = {cell["train"]["use_gpu"] for cell in comparison.cells.values()}
        assert use_gpu == {name == "gpu"}, f"{where}: train.use_gpu of the cells {use_gpu}"
