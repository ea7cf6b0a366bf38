"""The search driver: one Tune trial = one full ``train()`` run (TorchTrainer, Ray Data input).

Ray 2.60 (Train V2) no longer accepts a TorchTrainer as a Tune trainable, so each trial runs
``run_trial``: it builds the trial's experiment config and calls ``train()``, whose TorchTrainer
forwards rank 0's reports to Tune with a ``TuneReportCallback``.

Experiment directory (``run.storage_path/run.name`` of the search file)::

    tune.yaml        the resolved search (base experiment + tune section); ``--resume`` reads it
    runs/<trial_id>/ each trial's training run (config.yaml, metrics, tb/, report.json, model/, checkpoints)
    <trial_id>/      Tune's own per-trial files (params.json, result.json, progress.csv)
    trials.csv/.md, best.yaml, auc_vs_rank.png   written by hamur_dist.tune.results

Early stopping: ASHA decides on ``epochs_done`` (epoch + 1), which ``EpochReportCallback`` adds to
every per-epoch report; its rungs all lie before a trial's last epoch. The final test report of a
trial (``final: 1``; its ``val/auc`` is the best epoch's) carries no ``epochs_done``, so ASHA ignores
it. Tune's own ``training_iteration`` would count that report as one more iteration, and it restarts
from 1 when a trial is resumed without a Tune checkpoint while the training run resumes at its next
epoch; hence our own counter.

A trial that ASHA stops is killed with its TorchTrainer; ``hamur_dist.tune.cleanup`` frees the
placement group its workers held (Ray Train's own cleaner needs the dashboard).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from hamur_dist.config import ExperimentConfig, to_dict
from hamur_dist.config_loader import ConfigError
from hamur_dist.tune.config import RUNS_DIR, SEARCH_FILE, TuneConfig, load_saved_search, save_search
from hamur_dist.tune.space import param_space, trial_experiment, validate_space

# The trial's own actor only waits for its TorchTrainer; it must not hold a whole CPU, or the
# train workers (train.cpus_per_worker each) and Ray Data's read tasks cannot be scheduled.
TRIAL_DRIVER_CPU = 0.01


def run_trial(params: dict, *, base: dict, space: dict, experiment_dir: str) -> None:
    """The Tune trainable: train the trial's config; a retried or resumed trial continues its own run."""
    from ray import tune

    from hamur_dist.train.trainer import train
    from hamur_dist.tune.cleanup import PlacementGroupRecorder
    from hamur_dist.tune.report import EpochReportCallback

    cfg = trial_experiment(base, params, space)
    trial_id = tune.get_context().get_trial_id()
    runs = Path(experiment_dir) / RUNS_DIR
    cfg.run.name = trial_id
    cfg.run.storage_path = str(runs)
    cfg.run.resume = (runs / trial_id / "config.yaml").is_file()
    if cfg.run.resume:
        print(f"[hamur tune] trial {trial_id}: continuing its run {runs / trial_id} from the last checkpoint")
    train(cfg, log=print, callbacks=[EpochReportCallback(), PlacementGroupRecorder(runs / trial_id)])


def trial_dirname(trial) -> str:
    """Tune's per-trial folder is named by the trial id alone (the run folder is runs/<trial_id>)."""
    return trial.trial_id


def _trainable(base: dict, tune_cfg: TuneConfig, experiment_dir: Path):
    from ray import tune

    fn = tune.with_parameters(run_trial, base=base, space=tune_cfg.space, experiment_dir=str(experiment_dir))
    return tune.with_resources(fn, {"cpu": TRIAL_DRIVER_CPU})


def _scheduler(experiment: ExperimentConfig, tune_cfg: TuneConfig):
    from ray.tune.schedulers import ASHAScheduler

    from hamur_dist.tune.report import EPOCHS_DONE

    asha = tune_cfg.scheduler
    if not asha.enabled:
        return None
    last_rung = experiment.train.epochs - 1
    if last_rung < asha.grace_period:
        raise ConfigError(f"tune.scheduler.grace_period ({asha.grace_period}) leaves ASHA no epoch to stop a trial "
                          f"before its last one (train.epochs={experiment.train.epochs}); lower it, raise "
                          "train.epochs, or set tune.scheduler.enabled=false")
    # max_t = epochs - 1 puts every rung before the last epoch; stop_last_trials=False: reaching max_t
    # does not stop a trial, so it runs its last epoch and its final test report arrives.
    return ASHAScheduler(time_attr=EPOCHS_DONE, max_t=last_rung, grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor, stop_last_trials=False)


def _search_alg(tune_cfg: TuneConfig):
    if tune_cfg.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=tune_cfg.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Passed explicitly (for the seed), the generator must carry the concurrency limit itself:
    # Tune applies max_concurrent_trials only to generators it makes.
    return BasicVariantGenerator(max_concurrent=tune_cfg.max_concurrent_trials, random_state=tune_cfg.seed)


def _tuner(experiment: ExperimentConfig, tune_cfg: TuneConfig, experiment_dir: Path):
    from ray import tune

    from hamur_dist.tune.cleanup import EndedTrialCleanup

    return tune.Tuner(
        _trainable(to_dict(experiment), tune_cfg, experiment_dir),
        param_space=param_space(tune_cfg.space),
        tune_config=tune.TuneConfig(metric=tune_cfg.metric, mode=tune_cfg.mode, search_alg=_search_alg(tune_cfg),
                                    scheduler=_scheduler(experiment, tune_cfg), num_samples=tune_cfg.num_samples,
                                    max_concurrent_trials=tune_cfg.max_concurrent_trials,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=experiment_dir.name, storage_path=str(experiment_dir.parent),
                                  failure_config=tune.FailureConfig(max_failures=tune_cfg.max_failures),
                                  callbacks=[EndedTrialCleanup(experiment_dir / RUNS_DIR)]),
    )


def experiment_dir_for(experiment: ExperimentConfig, config_path: str | None) -> Path:
    storage = experiment.run.storage_path
    if "://" in storage:
        raise ConfigError(f"run.storage_path: '{storage}': a search writes its tables and trial runs to a "
                          "local or shared (NFS) folder; URIs are not supported")
    stem = Path(config_path).stem if config_path else "search"
    name = experiment.run.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(storage).expanduser().absolute() / name


def _started(experiment_dir: Path) -> bool:
    """Whether Tune saved state there (a search that died before that can simply be started again)."""
    from ray import tune

    return tune.Tuner.can_restore(str(experiment_dir))


@dataclass
class SearchResult:
    experiment_dir: Path
    trials: list              # hamur_dist.tune.results.TrialRow, one per trial
    best: object | None       # the best TrialRow
    files: dict               # artifact name -> path


def run_search(experiment: ExperimentConfig, tune_cfg: TuneConfig, config_path: str | None = None,
               log=print) -> SearchResult:
    """Start a search; uses the caller's Ray connection if there is one, else ``experiment.ray``."""
    from hamur_dist.ray_connection import ray_cluster
    from hamur_dist.train.trainer import ensure_dataset

    validate_space(experiment, tune_cfg)
    _scheduler(experiment, tune_cfg)  # config errors before anything starts
    experiment_dir = experiment_dir_for(experiment, config_path)
    if (experiment_dir / SEARCH_FILE).exists() and _started(experiment_dir):
        raise ConfigError(f"experiment directory {experiment_dir} exists: pass --resume {experiment_dir} "
                          "to continue it, or choose another run.name")
    root, manifest = ensure_dataset(experiment, log)   # once, before trials race to prepare it
    experiment.data.path = root                        # absolute: trials run in their own working dirs
    experiment.run.name, experiment.run.storage_path = experiment_dir.name, str(experiment_dir.parent)
    experiment.run.resume = False
    save_search(experiment_dir, experiment, tune_cfg)
    log(f"[hamur tune] {tune_cfg.search} search over {', '.join(tune_cfg.space)}; "
        f"experiment directory {experiment_dir}")
    with ray_cluster(experiment.ray, log):
        grid = _tuner(experiment, tune_cfg, experiment_dir).fit()
    return _finish(grid, experiment, tune_cfg, experiment_dir, manifest, log)


def resume_search(experiment_dir: str | Path, log=print, address: str | None = None) -> SearchResult:
    """Continue an interrupted search: finished trials keep their results, unfinished and errored
    ones continue their training runs from the last checkpoint, trials not started yet start."""
    from ray import tune

    from hamur_dist.ray_connection import ray_cluster
    from hamur_dist.train.trainer import ensure_dataset

    experiment_dir = Path(experiment_dir).expanduser().absolute()
    experiment, tune_cfg = load_saved_search(experiment_dir)
    if address:
        experiment.ray.address = address
    _, manifest = ensure_dataset(experiment, log)
    if not _started(experiment_dir):
        raise ConfigError(f"cannot resume {experiment_dir}: Tune saved no experiment state there yet "
                          "(the search was interrupted before its first trial started); start it again")
    log(f"[hamur tune] resuming {experiment_dir}")
    with ray_cluster(experiment.ray, log):
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=_trainable(to_dict(experiment), tune_cfg, experiment_dir),
                                   resume_unfinished=True, resume_errored=True)
        grid = tuner.fit()
    return _finish(grid, experiment, tune_cfg, experiment_dir, manifest, log)


def _finish(grid, experiment, tune_cfg, experiment_dir, manifest, log) -> SearchResult:
    from hamur_dist.tune.results import write_outputs

    trials, best, files = write_outputs(grid, experiment, tune_cfg, experiment_dir, manifest)
    if grid.num_errors:
        log(f"[hamur tune] {grid.num_errors} trial(s) failed; see the status column of {files['table_md']}")
    return SearchResult(experiment_dir=experiment_dir, trials=trials, best=best, files=files)
