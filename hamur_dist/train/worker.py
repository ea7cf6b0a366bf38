"""The function Ray Train runs on every worker: the Ray glue around ``steps`` and ``loop_state``.

Per epoch: train on this worker's share of the train split, evaluate the validation split (every
worker's predictions gathered), book the epoch (best, patience), report it to Ray Train with a
checkpoint when it is needed. Rank 0 writes the run files. After the last epoch: the test split
with the best epoch's weights, the report, and the model artifact.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

from hamur_dist.config import ExperimentConfig, from_dict
from hamur_dist.data.batches import BatchCollator, InputDataError
from hamur_dist.data.manifest import load_manifest
from hamur_dist.metrics import flat_metrics, fmt
from hamur_dist.train import resume
from hamur_dist.train.loop_state import LoopState, run_epochs
from hamur_dist.train.memory import MemoryMonitor
from hamur_dist.train.outputs import RunOutputs, append_event
from hamur_dist.console import detail, say
from hamur_dist.train.steps import evaluate, rank_and_world, train_epoch
from hamur_dist.train.watchdog import StallWatchdog
from hamur_dist.train.worker_model import WorkerModel


def shard_batches(cfg: ExperimentConfig, split: str, collate: BatchCollator, device, epoch: int = 0):
    """This worker's batches of ``split`` for one pass (a local shuffle buffer for train, if configured)."""
    import ray.train

    from hamur_dist.data.ray_datasets import arrow_collate

    training = split == "train"
    kwargs = dict(batch_size=cfg.data.batch_size if training else cfg.data.eval_batch_size,
                  collate_fn=arrow_collate(collate), prefetch_batches=2, device="cpu", pin_memory=device.type == "cuda")
    if training and cfg.data.local_shuffle_buffer > 0:
        kwargs.update(local_shuffle_buffer_size=cfg.data.local_shuffle_buffer,
                      local_shuffle_seed=cfg.train.seed + epoch)   # a fixed seed mixes alike every epoch
    return ray.train.get_dataset_shard(split).iter_torch_batches(**kwargs)


def naming_split(split: str, fn):
    """Run ``fn``; a bad value found in a batch is raised at once as an ``InputDataError`` of ``split``
    (the driver finds its shard and row: this rank's peers wait in a collective meanwhile)."""
    try:
        return fn()
    except Exception as exc:  # Ray wraps errors raised in its prefetch threads
        from hamur_dist.ray_internals import find_cause

        cause = find_cause(exc, InputDataError)
        if cause is not None:
            raise InputDataError(str(cause), split) from None
        raise


def failure_injector(cfg: ExperimentConfig, run_dir: Path, rank: int):
    """``train.fail_at_step``: rank 0 exits the process once at that global step (fault tests).

    It first waits until Ray Train has registered every checkpoint reported so far, so the restart
    resumes from a known checkpoint however loaded the machine is."""
    if cfg.train.fail_at_step < 0 or rank != 0:
        return None

    def after_step(global_step: int) -> None:
        marker = run_dir / ".fault_injected"
        if global_step != cfg.train.fail_at_step or marker.exists():
            return
        import ray.train

        ray.train.get_all_reported_checkpoints()   # blocks until every report so far is processed
        marker.write_text(str(global_step))
        say(f"[hamur] injecting a failure at global step {global_step} (train.fail_at_step)")
        os._exit(1)  # like a SIGKILL'd worker: no cleanup, no exception handling

    return after_step


def train_loop_per_worker(config: dict) -> None:
    import ray.train

    cfg = from_dict(config["experiment"])
    root, run_dir = config["dataset_root"], Path(config["run_dir"])
    manifest = load_manifest(root)
    rank, world = rank_and_world()
    torch.manual_seed(cfg.train.seed)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    init = None
    if config.get("init"):
        from hamur_dist.train.warm_start import InitSource
        init = InitSource(**config["init"])
    wm = WorkerModel(cfg, manifest, rank, world, init=init)
    fingerprint = wm.fingerprint()

    restored = resume.restore_latest(ray.train, wm, fingerprint, run_dir)
    state = restored[0] if restored is not None else LoopState.fresh(cfg.train.patience)
    if restored is not None and rank == 0:
        message = (f"resumed from the checkpoint after epoch {state.last_epoch} on {world} worker(s) "
                   f"(saved by {restored[1]}; best val AUC {state.best.auc:.4f} at epoch {state.best.epoch})")
        say(f"[hamur] {message}")
        append_event(run_dir, message)

    outputs = RunOutputs(run_dir) if rank == 0 else None
    if rank == 0 and cfg.run.resume:   # only now is the resumed config known to fit the run's checkpoints
        outputs.write_config(config["experiment"])
    with_user = manifest.user_column is not None
    collate_train, collate_eval = BatchCollator(manifest), BatchCollator(manifest, with_user=with_user)
    memory = MemoryMonitor()
    inject_failure = failure_injector(cfg, run_dir, rank)
    watch = StallWatchdog(run_dir, rank, world, cfg.train.stall_timeout_s)

    def one_epoch(epoch: int):
        lr = wm.set_epoch_lr(epoch)
        train_metrics, state.global_step = naming_split("train", lambda: train_epoch(
            wm, shard_batches(cfg, "train", collate_train, wm.device, epoch), epoch, manifest.splits["train"].rows,
            state.global_step, memory, cfg.train.log_every_steps, cfg.train.max_steps_per_epoch, inject_failure,
            watch))
        val = naming_split("val", lambda: evaluate(wm, shard_batches(cfg, "val", collate_eval, wm.device), manifest,
                                                   with_user, watch))
        row = {"epoch": epoch, "global_step": state.global_step, "train/lr": lr, **train_metrics,
               **flat_metrics(val, "val")}
        return val["overall"]["auc"], val, row

    def after_epoch(epoch: int, row: dict, improved: bool):
        stopping = state.finished(cfg.train.epochs, cfg.train.patience)
        if rank == 0:
            outputs.log_epoch(row)
            say(epoch_line(epoch, row, improved))
            detail(memory_line(epoch, row, world))
        # An improved epoch is always saved: the test runs on the best epoch's checkpoint.
        save_now = improved or (epoch + 1) % cfg.checkpoint.every_epochs == 0 or stopping
        with watch.doing("reporting the epoch (checkpoint)"):
            resume.report(ray.train, wm, state, row, fingerprint, with_checkpoint=save_now)
        watch.beat()
        if stopping and rank == 0 and epoch + 1 < cfg.train.epochs:
            say(f"[hamur] early stopping: no better val AUC for {cfg.train.patience} epochs")

    run_epochs(state, cfg.train.epochs, cfg.train.patience, one_epoch, after_epoch)
    memory.close()

    best_checkpoint = resume.load_best(ray.train, wm, state.best.epoch, fingerprint)
    test = naming_split("test", lambda: evaluate(wm, shard_batches(cfg, "test", collate_eval, wm.device), manifest,
                                                 with_user, watch))
    watch.close()
    if rank == 0:
        hamur = "+hamur-" + cfg.model.hamur.mode if cfg.model.hamur.enabled else ""
        outputs.write_report({"run_name": run_dir.name, "model": cfg.model.name + hamur, "dataset": str(root),
                              "best_epoch": state.best.epoch, "epochs_run": len(state.history), "test": test,
                              "best_val": state.best.val, "world_size": world})
        outputs.plot_val_auc(manifest.domain.num_domains, manifest.domain.names)
        outputs.close()
        with best_checkpoint.as_directory() if best_checkpoint is not None else contextlib.nullcontext(None) as d:
            wm.export_artifact(run_dir / "model", cfg, d, dataset_root=root)
    best_auc = state.best.auc if state.best.auc != -math.inf else float("nan")
    row = {"epoch": state.last_epoch, "final": 1, **flat_metrics(test, "test"), "best_epoch": state.best.epoch,
           "val/auc": best_auc}
    resume.report(ray.train, wm, state, row, fingerprint, with_checkpoint=True)


def epoch_line(epoch: int, row: dict, improved: bool) -> str:
    """The console's epoch summary: loss, speed, validation AUC overall and per domain."""
    domains = sorted({int(k.split("/")[1][1:]) for k in row if k.startswith("val/d") and k.endswith("/auc")})
    per_domain = ", ".join(f"d{d} {fmt(row[f'val/d{d}/auc'])}" for d in domains)
    return (f"[hamur] epoch {epoch}: train loss {row['train/loss']:.4f}, {row['train/samples_per_s']:,.0f} samples/s, "
            f"val AUC {fmt(row.get('val/auc'))} ({per_domain}){' *best*' if improved else ''}")


def memory_line(epoch: int, row: dict, world: int) -> str:
    def rank(r: int) -> str:
        figure = lambda key: f"{row[f'worker{r}/{key}_mb']:,.0f}"   # noqa: E731
        return (f"rank {r} {figure('rss')}/{figure('peak_rss')} ({figure('private_rss')}/{figure('private_peak_rss')}"
                f" + {figure('shared_rss')}, {figure('store_rss')})")

    return (f"epoch {epoch}: worker memory MB, RSS now/peak (private now/epoch peak + shared, "
            "of it object store): " + ", ".join(rank(r) for r in range(world)))
