"""Run a comparison: every unfinished (model, seed) cell is one Ray Tune trial that trains a full run.

Experiment directory (``run.storage_path/run.name`` of the comparison file)::

    compare.yaml               the resolved comparison (every cell's full config); --resume reads it
    runs/<model>/seed<seed>/   each cell's training run (config.yaml, metrics.jsonl, report.json, model/ ...)
    tune/attempt-<n>/          Tune's own records of each attempt
    comparison.md/.csv/.json/.png

Resuming is ours, not Tune's: a cell whose run holds ``report.json`` is finished and never run again;
every other cell is handed to a new Tune run, and a cell whose training run was interrupted continues
it from its last checkpoint. A resume runs the saved ``compare.yaml`` unchanged.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hamur_dist.compare.collect import cell_dir, cell_name, collect, is_finished, parse_cell
from hamur_dist.compare.config import SAVED_FILE, Comparison, load_saved_comparison, save_comparison
from hamur_dist.config_loader import ConfigError
from hamur_dist.console import LOG_FILE

TRIAL_DRIVER_CPU = 0.01   # the trial's own actor only waits for its TorchTrainer (see hamur_dist.tune.driver)
TUNE_DIR = "tune"


def run_cell(params: dict, *, cells: dict, experiment_dir: str) -> None:
    """The Tune trainable: train one cell; an interrupted cell continues its own run."""
    from hamur_dist.config import from_dict
    from hamur_dist.train.trainer import train
    from hamur_dist.tune.cleanup import PlacementGroupRecorder

    model, seed = parse_cell(params["cell"])
    data = {**cells[model], "train": {**cells[model]["train"], "seed": seed}}
    cfg = from_dict(data)
    run_dir = cell_dir(Path(experiment_dir), model, seed)
    cfg.run.name, cfg.run.storage_path = run_dir.name, str(run_dir.parent)
    cfg.run.resume = (run_dir / "config.yaml").is_file()
    if cfg.run.resume:
        print(f"[hamur compare] {model} seed {seed}: continuing its run {run_dir} from the last checkpoint")
    train(cfg, log=print, callbacks=[PlacementGroupRecorder(run_dir)])


def _trial_name(trial) -> str:
    return trial.config["cell"].replace("/", "-")   # e.g. star-seed0


def _attempt_name(experiment_dir: Path) -> str:
    done = sorted((experiment_dir / TUNE_DIR).glob("attempt-*")) if (experiment_dir / TUNE_DIR).is_dir() else []
    return f"attempt-{len(done) + 1}"


def _run_pending(comparison: Comparison, experiment_dir: Path, pending: list[str], log) -> dict:
    """Train the pending cells under Tune; (model, seed) -> last error line of cells that failed."""
    from ray import tune

    from hamur_dist.compare.progress import CellCleanup, CellProgress

    settings = comparison.settings
    trainable = tune.with_resources(
        tune.with_parameters(run_cell, cells=comparison.cells, experiment_dir=str(experiment_dir)),
        {"cpu": TRIAL_DRIVER_CPU})
    total = len(comparison.cells) * len(settings.seeds)
    console = sys.stdout

    def say(message: str) -> None:      # our cell lines reach the console; Tune's own prints do not
        with contextlib.redirect_stdout(console):
            log(message)

    # one trial per cell; placement groups of ended trials are freed like in `hamur tune`
    callbacks = [CellCleanup(experiment_dir), CellProgress(experiment_dir, total, total - len(pending), say)]
    tuner = tune.Tuner(
        trainable, param_space={"cell": tune.grid_search(pending)},
        tune_config=tune.TuneConfig(max_concurrent_trials=settings.max_concurrent_trials,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=_attempt_name(experiment_dir), storage_path=str(experiment_dir / TUNE_DIR),
                                  failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                                  callbacks=callbacks, verbose=0))
    with open(experiment_dir / LOG_FILE, "a", encoding="utf-8") as tune_output, contextlib.redirect_stdout(tune_output):
        grid = tuner.fit()     # Tune prints its tables and paths: kept in the log file
    errors = {}
    for result in grid:
        if result.error is not None:
            lines = str(result.error).strip().splitlines()
            errors[parse_cell(result.config["cell"])] = (lines[-1] if lines else type(result.error).__name__)[:160]
    return errors


@dataclass
class ComparisonResult:
    experiment_dir: Path
    cells: list          # hamur_dist.compare.stats.CellResult, model order then seed order
    files: dict          # file name -> path
    errors: dict


def experiment_dir_for(comparison: Comparison, config_path: str | None) -> Path:
    run = comparison.base.run
    if "://" in run.storage_path:
        raise ConfigError(f"run.storage_path: '{run.storage_path}': a comparison writes its runs and tables to "
                          "a local or shared (NFS) folder; URIs are not supported")
    stem = Path(config_path).stem if config_path else "comparison"
    name = run.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(run.storage_path).expanduser().absolute() / name


def _execute(comparison: Comparison, experiment_dir: Path, log) -> ComparisonResult:
    from hamur_dist.compare.report import write_report
    from hamur_dist.console import ray_logging_to, show_worker_output
    from hamur_dist.ray_connection import ray_cluster
    from hamur_dist.train.trainer import ensure_dataset

    root, manifest = ensure_dataset(comparison.base, log)
    seeds = comparison.settings.seeds
    pending = [cell_name(m, s) for m in comparison.cells for s in seeds
               if not is_finished(cell_dir(experiment_dir, m, s))]
    total = len(comparison.cells) * len(seeds)
    log(f"[hamur compare] {len(comparison.cells)} models x {len(seeds)} seeds: {total - len(pending)} cells "
        f"finished, {len(pending)} to train; experiment directory {experiment_dir}")
    errors = {}
    if pending:
        ray_log = experiment_dir / LOG_FILE
        log(f"[hamur compare] each cell's output: its run folder and {ray_log}")
        with ray_logging_to(ray_log), ray_cluster(comparison.base.ray, log), \
                show_worker_output(ray_log, ours=False):
            errors = _run_pending(comparison, experiment_dir, pending, log)
    cells = collect(comparison, experiment_dir, manifest.schema, errors)
    files = write_report(cells, experiment_dir, experiment_dir.name, comparison.settings.alpha,
                         {"dataset": str(root), "seeds": seeds})
    if errors:
        log(f"[hamur compare] {len(errors)} cell(s) failed; see the Cells table of {files['comparison.md']}")
    return ComparisonResult(experiment_dir, cells, files, errors)


def run_comparison(comparison: Comparison, config_path: str | None = None, log=print) -> ComparisonResult:
    from hamur_dist.train.trainer import ensure_dataset

    experiment_dir = experiment_dir_for(comparison, config_path)
    if (experiment_dir / SAVED_FILE).exists():
        raise ConfigError(f"experiment directory {experiment_dir} exists: pass --resume {experiment_dir} to "
                          "continue it, or choose another run.name")
    root, _ = ensure_dataset(comparison.base, log)       # once, before cells race to prepare it
    comparison.base.data.path = root                        # absolute: trials run in their own folders
    for cell in comparison.cells.values():
        cell["data"]["path"] = root
    comparison.base.run.name, comparison.base.run.storage_path = experiment_dir.name, str(experiment_dir.parent)
    save_comparison(experiment_dir, comparison)
    return _execute(comparison, experiment_dir, log)


def resume_comparison(experiment_dir: str | Path, log=print, address: str | None = None) -> ComparisonResult:
    experiment_dir = Path(experiment_dir).expanduser().absolute()
    comparison = load_saved_comparison(experiment_dir)
    if address:
        comparison.base.ray.address = address
    log(f"[hamur compare] resuming {experiment_dir}")
    return _execute(comparison, experiment_dir, log)
