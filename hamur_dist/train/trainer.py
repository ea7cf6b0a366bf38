"""The driver side of ``hamur train``: resolve config and dataset, start or join Ray, run TorchTrainer.

    result = train(load_experiment("configs/quickstart.yaml"))
    result.report["test"]["overall"]["auc"]
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from hamur_dist.config import ExperimentConfig, to_dict
from hamur_dist.config_loader import ConfigError
from hamur_dist.console import LOG_FILE, ray_logging_to, show_worker_output
from hamur_dist.data.manifest import Manifest, ManifestError, load_manifest
from hamur_dist.data.batches import InputDataError, locate_bad_row
from hamur_dist.ray_connection import ray_cluster
from hamur_dist.train.checkpoint import CheckpointError
from hamur_dist.train.outputs import EVENTS_FILE, RESTART_MARK, RunOutputs
from hamur_dist.train.run_location import claim_run_dir, is_uri, resolve_run, stored_run_exists
from hamur_dist.train.restart_watch import ClusterTooSmallError, RestartWatch
from hamur_dist.train.watchdog import stall_note


class TrainingError(RuntimeError):
    """Training stopped; the message says why (worker errors are unwrapped)."""


@dataclass
class TrainResult:
    run_dir: Path
    report: dict
    history: list[dict]
    checkpoint_path: str | None


def ensure_dataset(cfg: ExperimentConfig, log=print) -> tuple[str, Manifest]:
    """The dataset directory (absolute) and its manifest; prepared first if missing and ``data.prepare`` says how."""
    if not cfg.data.path:
        raise ConfigError("data.path is empty: name a dataset prepared with `hamur prepare`")
    root = Path(cfg.data.path).expanduser().absolute()
    if not (root / "manifest.json").is_file() and cfg.data.prepare is not None:
        from hamur_dist.data import prepare

        log(f"[hamur] dataset {root} not found: preparing it ({cfg.data.prepare.dataset}, {cfg.data.prepare.args})")
        prepare(cfg.data.prepare.dataset, root, **cfg.data.prepare.args)
    manifest = load_manifest(root)
    if cfg.data.verify_hashes:
        from hamur_dist.data.validation import verify_dataset

        verify_dataset(root, check_hashes=True)
    return str(root), manifest


def _unwrap(exc: BaseException, root: str | None = None, manifest: Manifest | None = None) -> str:
    """The first worker error's message, without Ray's wrapping. Bad input found in a split is
    located here, on the driver (file, row, column), so no worker rescans while its peers wait."""
    from hamur_dist.ray_internals import find_cause

    e = find_cause(exc, (InputDataError, CheckpointError, ManifestError, ConfigError, ClusterTooSmallError))
    if isinstance(e, InputDataError) and e.split and manifest is not None:
        return f"InputDataError: bad input row: {locate_bad_row(manifest.shard_paths(root, e.split), manifest)}"
    if e is not None:
        return f"{type(e).__name__}: {e}"
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _num_workers(cfg: ExperimentConfig) -> int | tuple[int, int]:
    """A fixed size, or (min, max): Ray Train V2 then restarts on as many workers as fit, at least min."""
    t = cfg.train
    return (t.min_workers, t.num_workers) if 0 < t.min_workers < t.num_workers else t.num_workers


def _count_events(run_dir: Path, text: str) -> int:
    path = run_dir / EVENTS_FILE
    return sum(text in line for line in path.read_text().splitlines()) if path.is_file() else 0


def train(cfg: ExperimentConfig, config_path: str | None = None, log=print, callbacks=(),
          verbose: bool = False) -> TrainResult:
    """Run one training; ``callbacks``: extra Ray Train ``UserCallback``s (Tune passes its report forwarder).
    Ray's own output goes to ``RUN_DIR/ray.log``; ``verbose`` shows it on the console as well."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from hamur_dist.data.ray_datasets import training_datasets
    from hamur_dist.ray_internals import exact_split_data_config
    from hamur_dist.train.worker import train_loop_per_worker

    root, manifest = ensure_dataset(cfg, log)
    init = None
    if cfg.train.init_from:
        from hamur_dist.train.warm_start import resolve_init
        init = resolve_init(cfg.train.init_from, cfg.model, root, manifest, cfg.train.init_optimizer_state,
                            cfg.train.trainable)
    name, storage, run_dir = resolve_run(cfg, config_path)
    if is_uri(storage) and stored_run_exists(storage, name) != cfg.run.resume:
        if not cfg.run.resume:   # Ray would silently continue that run's checkpoints
            raise ConfigError(f"run '{name}' already exists in {storage}: resume it with "
                              f"`hamur train --resume {run_dir}`, or choose another run.name")
        log(f"[hamur] note: {storage}/{name} holds no checkpoint yet: the run starts from epoch 0")
    if not cfg.run.resume:   # a resumed run's config.yaml is rewritten once its checkpoint has loaded (worker.py)
        run_dir = claim_run_dir(run_dir, auto_named=not cfg.run.name)
        name = run_dir.name
        cfg.run.name = name
        RunOutputs(run_dir).write_config(to_dict(cfg))
    cfg.run.name = name
    log(f"[hamur] run {name}: {cfg.train.num_workers} workers x batch {cfg.data.batch_size} "
        f"= global batch {cfg.train.num_workers * cfg.data.batch_size}; run dir {run_dir}")
    if init is not None:
        log(f"[hamur] starting from {init.model_dir} (best epoch's weights"
            f"{', optimiser state of ' + init.checkpoint_dir if init.checkpoint_dir else '; ' + init.note})"
            f"{'; training only the parts of the new domains' if cfg.train.trainable == 'new_domains' else ''}")

    ray_log = run_dir / LOG_FILE
    with ray_logging_to(ray_log, verbose), ray_cluster(cfg.ray, log), show_worker_output(ray_log, verbose):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # rank 0 prints its own progress lines; Ray's bars flood logs
        ctx.print_on_execution_start = False
        datasets = training_datasets(root, manifest, cfg.data, cfg.train.seed)
        resources = {"CPU": cfg.train.cpus_per_worker}
        if cfg.train.use_gpu:
            resources["GPU"] = 1
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"experiment": to_dict(cfg), "dataset_root": root, "run_dir": str(run_dir),
                               "init": None if init is None else dataclasses.asdict(init)},
            scaling_config=ScalingConfig(num_workers=_num_workers(cfg), use_gpu=cfg.train.use_gpu,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=name, storage_path=storage,
                                 failure_config=FailureConfig(max_failures=cfg.run.max_failures),
                                 # keeps the best by val AUC (and always the latest, for resuming)
                                 checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep,
                                                                    checkpoint_score_attribute="val/auc",
                                                                    checkpoint_score_order="max"),
                                 callbacks=[*callbacks, RestartWatch(
                                     run_dir, cfg.train.min_workers or cfg.train.num_workers, resources,
                                     cfg.run.worker_wait_s, cfg.run.max_failures)]),
            datasets=datasets,
            dataset_config=exact_split_data_config(),
            torch_config=TorchConfig(timeout_s=cfg.train.collective_timeout_s),
        )
        restarts_before = _count_events(run_dir, RESTART_MARK)
        started = time.time()
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - re-raised with the worker's own message
            why = stall_note(run_dir, started) or _unwrap(exc, root, manifest)
            raise TrainingError(f"training failed: {why} (run dir {run_dir}; "
                                f"resume with `hamur train --resume {run_dir}`)") from exc
        if result.error is not None:
            why = stall_note(run_dir, started) or _unwrap(result.error, root, manifest)
            raise TrainingError(f"training failed: {why} (run dir {run_dir})")

    restarts = _count_events(run_dir, RESTART_MARK) - restarts_before
    if restarts:
        log(f"[hamur] the run recovered from {restarts} worker-group failure(s): see {run_dir / EVENTS_FILE}")
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if init is not None and report.get("test"):
        from hamur_dist.infer.evaluate import evaluate_previous
        report["previous_model"] = {"model": init.model_dir, "test": evaluate_previous(init.model_dir, root)}
        RunOutputs(run_dir).write_report(report)
    history = RunOutputs(run_dir).history()
    ckpt_path = result.checkpoint.path if result.checkpoint is not None else None
    return TrainResult(run_dir=run_dir, report=report, history=history, checkpoint_path=ckpt_path)
