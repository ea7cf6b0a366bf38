"""The experiment config tree: one dataclass per section, loaded from YAML with key=value overrides.

    cfg = load_experiment("configs/quickstart.yaml", ["train.epochs=3", "model.hamur.rank=16"])

Sections: data, model, embedding, train, checkpoint, ray, run. Every component reads its settings
from this one tree; there is no second way to pass settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from hamur_dist import config_loader
from hamur_dist.config_loader import ConfigError
from hamur_dist.model.config import ModelConfig

__all__ = ["ExperimentConfig", "load_experiment", "ConfigError"]


@dataclass
class PrepareSpec:
    """How to make the dataset if ``data.path`` does not exist yet (used by the quickstart)."""
    dataset: str = "synthetic"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    path: str = ""                              # a prepared dataset directory (manifest.json + shards)
    prepare: PrepareSpec | None = None          # make it first when missing (cached afterwards)
    batch_size: int = 4096                      # per worker
    eval_batch_size: int = 16384
    shuffle_files: bool = True                  # new file (and block) order every epoch
    local_shuffle_buffer: int = 0               # rows mixed before batching (new mix every epoch); 0 = off
    global_shuffle: bool = False                # full row shuffle of the train split every epoch (Ray Data
                                                # random_shuffle: the split must fit the object store)
    materialize: bool = False                   # keep the dataset in the object store across epochs
    verify_hashes: bool = True                  # check shard content hashes against the manifest before training

    def validate(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("data.batch_size and data.eval_batch_size must be >= 1")


@dataclass
class EmbeddingConfig:
    """How embedding tables are placed and updated (``hamur_dist.embedding.planner`` has the cost model).
    Modes: ``replicated`` (dense update), ``replicated_sparse``, ``row_wise``, ``table_wise``; ``auto``
    picks one per table."""
    MODES: ClassVar[tuple[str, ...]] = ("replicated", "replicated_sparse", "row_wise", "table_wise")

    sharding: Literal["auto", "replicated", "replicated_sparse", "row_wise", "table_wise"] = "auto"
    overrides: dict[str, str] = field(default_factory=dict)   # table name -> mode; wins over sharding
    replicated_max_mb: float = 1024.0           # auto: per-worker budget for replicated tables (weights +
                                                # optimiser state); tables beyond it go row-wise
    dense_rows_factor: float = 4.0              # auto: dense update when rows <= this x rows touched per step
    dense_max_kb: float = 1024.0                # auto: dense update for tables of at most this many KiB
                                                # (their whole step costs less than sparse bookkeeping)
    auto_row_wise_min_rows: int | None = None   # auto: tables at least this big go row-wise regardless
    sparse_optimizer: Literal["adam", "adagrad"] = "adam"
    sparse_lr: float | None = None                            # default: train.lr

    def validate(self) -> None:
        if self.sharding not in ("auto",) + self.MODES:
            raise ConfigError(f"embedding.sharding: {self.sharding!r} is not one of {['auto', *self.MODES]}")
        for name, mode in self.overrides.items():
            if mode not in self.MODES:
                raise ConfigError(f"embedding.overrides.{name}: {mode!r} is not one of {list(self.MODES)}")
        if not self.replicated_max_mb >= 0:
            raise ConfigError(f"embedding.replicated_max_mb must be >= 0, got {self.replicated_max_mb}")
        if not self.dense_rows_factor >= 0:
            raise ConfigError(f"embedding.dense_rows_factor must be >= 0, got {self.dense_rows_factor}")
        if not self.dense_max_kb >= 0:
            raise ConfigError(f"embedding.dense_max_kb must be >= 0, got {self.dense_max_kb}")
        if self.auto_row_wise_min_rows is not None and self.auto_row_wise_min_rows < 1:
            raise ConfigError(f"embedding.auto_row_wise_min_rows must be >= 1 or null, "
                              f"got {self.auto_row_wise_min_rows}")
        if self.sparse_lr is not None and not self.sparse_lr > 0:
            raise ConfigError(f"embedding.sparse_lr must be > 0 or null, got {self.sparse_lr}")


@dataclass
class TrainConfig:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5        # < 1 on small machines so Ray Data read tasks can still run
    precision: Literal["fp32", "bf16"] = "fp32"   # bf16 autocast on GPU
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_decay: float = 1.0               # epoch e trains at lr * lr_decay**e (1.0 = constant lr)
    epochs: int = 10
    patience: int = 3                   # epochs without a better overall val AUC before stopping; 0 = off
    seed: int = 2022
    log_every_steps: int = 50           # rank 0's progress for the console: at least every this many steps
                                        # and every second; 0 = off
    max_steps_per_epoch: int = 0        # 0 = whole epoch; >0 only for smoke tests
    fail_at_step: int = -1              # fault injection: rank 0 exits its process once at this global step
    collective_timeout_s: int = 600     # every process group (DDP's, the sharded tables'): a collective
                                        # waiting longer fails instead of hanging (torch's default: 30 min)
    stall_timeout_s: float = 300        # no step completed on a worker for this long: stop, naming the
                                        # stuck rank (below collective_timeout_s); 0 = off
    min_workers: int = 0                # > 0 and < num_workers: elastic; after losing nodes, restart on
                                        # as many workers as fit, but at least this many (0 = fixed size)
    init_from: str | None = None        # start from this run's best weights (a run directory or its model/)
    init_optimizer_state: bool = True   # with init_from: also its optimiser state, where it was kept
    trainable: Literal["all", "new_domains"] = "all"   # new_domains (with init_from): only the parts of the
                                        # domains the dataset adds; shared parts and hyper-network frozen
    unfreeze: list[str] = field(default_factory=list)   # with new_domains: [hyper_network] trains the
                                        # HAMUR hyper-network too (the old domains' predictions then move)

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ConfigError("train.num_workers must be >= 1")
        if self.epochs < 1:
            raise ConfigError("train.epochs must be >= 1")
        if self.lr <= 0:
            raise ConfigError("train.lr must be > 0")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.collective_timeout_s < 1:
            raise ConfigError(f"train.collective_timeout_s must be >= 1, got {self.collective_timeout_s}")
        if self.stall_timeout_s < 0 or (self.stall_timeout_s and self.stall_timeout_s >= self.collective_timeout_s):
            raise ConfigError(f"train.stall_timeout_s must be 0 (off) or in (0, train.collective_timeout_s="
                              f"{self.collective_timeout_s}), got {self.stall_timeout_s}: the watchdog must "
                              "name the stuck rank before a collective times out")
        if self.precision == "bf16" and not self.use_gpu:
            raise ConfigError("train.precision: bf16 autocast runs on GPUs only; set train.use_gpu=true "
                              "or train.precision=fp32")
        if self.unfreeze and (self.trainable != "new_domains" or set(self.unfreeze) - {"hyper_network"}):
            raise ConfigError(f"train.unfreeze: {self.unfreeze}; only [hyper_network], with train.trainable: "
                              "new_domains (everything else already trains with trainable: all)")
        if self.trainable != "all" and not self.init_from:
            raise ConfigError(f"train.trainable: {self.trainable} trains the parts of domains added to a trained "
                              "model: set train.init_from (hamur train --init-from RUN)")
        if self.init_from and not (Path(self.init_from).expanduser() / "model.pt").is_file() \
                and not (Path(self.init_from).expanduser() / "model" / "model.pt").is_file():
            raise ConfigError(f"train.init_from: no model artifact in {self.init_from} (a run directory with "
                              "model/model.pt, or that model/ folder)")
        if not 0 <= self.min_workers <= self.num_workers:
            raise ConfigError(f"train.min_workers must be in [0, train.num_workers={self.num_workers}], "
                              f"got {self.min_workers}")


@dataclass
class CheckpointConfig:
    every_epochs: int = 1               # besides every improved epoch and the last one
    num_to_keep: int = 2

    def validate(self) -> None:
        if self.every_epochs < 1:
            raise ConfigError(f"checkpoint.every_epochs must be >= 1, got {self.every_epochs}")
        if self.num_to_keep < 1:
            raise ConfigError(f"checkpoint.num_to_keep must be >= 1, got {self.num_to_keep}")


@dataclass
class RayConfig:
    address: str | None = None          # join this cluster (also RAY_ADDRESS); None = start a local one
    num_cpus: int | None = None         # local Ray only; None = logical CPUs = 2 x cores, at least 4
    object_store_mb: int = 1024         # local Ray only


@dataclass
class RunConfig:
    name: str | None = None             # default: <config stem>-<timestamp>
    storage_path: str = "runs"          # made absolute; a URI (s3://, gs://) is passed to Ray as is
    files_path: str = "runs"            # with a URI storage_path: where hamur's own run files go
    max_failures: int = 0               # worker-group restarts from the last checkpoint
    worker_wait_s: float = 600          # a (re)start that cannot place the workers for this long stops
                                        # with an error; the last checkpoint stays resumable

    def validate(self) -> None:
        if self.worker_wait_s <= 0:
            raise ConfigError("run.worker_wait_s must be > 0")
    resume: bool = False


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    run: RunConfig = field(default_factory=RunConfig)


def load_experiment(path: str | Path | None, overrides=()) -> ExperimentConfig:
    return config_loader.load(ExperimentConfig, path, overrides)


def to_dict(cfg: Any) -> Any:
    return config_loader.to_dict(cfg)


def from_dict(data: dict) -> ExperimentConfig:
    return config_loader.build(ExperimentConfig, data)
