"""One way to fit any model family: the Trainer, its callbacks and loggers built from config,
the run's checkpoints, resume after a crash, and a last validation of the final weights.

A run keeps its state in ``runs/<family>/`` (``Paths.run``): ``checkpoints/{last,best}.ckpt``,
Lightning's CSV log (``csv/<fingerprint>-<session>/metrics.csv``, one directory per session
of the run) and a ``finished`` marker. Every checkpoint carries the run's *fingerprint* --
a hash of everything that determines the trained weights: the family's config section, the
trainer and callbacks, the seed and the training data -- and its W&B run id. A rerun resumes
from ``last.ckpt`` only when that fingerprint matches and the run it belongs to never
finished, so a crashed run continues (and continues its W&B run), while a changed or
repeated experiment starts afresh instead of silently continuing another run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    ThroughputMonitor,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from llmworks.errors import LlmworksError
from llmworks.tracking.runs import finish_wandb, job_type, wandb_logger
from llmworks.training.callbacks import ProgressLog, StopOnNonFiniteLoss
from llmworks.training.csv_logger import CrashSafeCSVLogger
from llmworks.training.logs import LOG_FILE, merge_sessions
from llmworks.training.preemption import SaveOnPreemption
from llmworks.training.trainer_config import check_trainer

log = logging.getLogger(__name__)

CHECKPOINTS, CSV, LAST, FINISHED = "checkpoints", "csv", "last.ckpt", "finished"
STAMP = "llmworks"  # the checkpoint entry holding fingerprint, W&B id and session


@dataclass(frozen=True)
class Run:
    """A training run's state directory and what this session does with it."""

    dir: Path
    fingerprint: str
    wandb_id: str
    session: int  # 0 for a fresh run, +1 for every resume
    resume_from: Path | None

    @property
    def checkpoints(self) -> Path:
        return self.dir / CHECKPOINTS

    @property
    def csv_version(self) -> str:
        return f"{self.fingerprint[:12]}-{self.session}"

    @classmethod
    def open(cls, run_dir: Path, fingerprint: str) -> Run:
        """Resume the interrupted run of this fingerprint, else prepare a fresh one. Nothing
        is deleted here: a fresh run replaces the old files when it saves its first
        checkpoint, so a run that fails before that leaves the previous one intact."""
        last = run_dir / CHECKPOINTS / LAST
        stamp = read_stamp(last)
        finished = run_dir / FINISHED
        done = finished.is_file() and finished.read_text().strip() == fingerprint
        if stamp and stamp["fingerprint"] == fingerprint and not done:
            return cls(run_dir, fingerprint, stamp["wandb_id"], stamp["session"] + 1, last)
        if stamp:
            why = "finished already" if done else "belongs to another config or data"
            log.info("%s %s: training afresh", last, why)
        return cls(run_dir, fingerprint, uuid.uuid4().hex[:12], 0, None)

    def session_logs(self) -> list[Path]:
        """This run's CSV logs, oldest session first."""
        prefix = f"{self.fingerprint[:12]}-"
        dirs = [d for d in (self.dir / CSV).glob(f"{prefix}*") if d.name[len(prefix) :].isdigit()]
        return [d / LOG_FILE for d in sorted(dirs, key=lambda d: int(d.name[len(prefix) :]))]

    def drop_other_runs(self) -> None:
        """Remove the logs of other runs and of sessions this one replaces."""
        for d in (self.dir / CSV).glob("*"):
            stem, _, n = d.name.rpartition("-")
            if stem != self.fingerprint[:12] or not n.isdigit() or int(n) > self.session:
                shutil.rmtree(d, ignore_errors=True)
        (self.dir / FINISHED).unlink(missing_ok=True)

    def mark_finished(self) -> None:
        (self.dir / FINISHED).write_text(self.fingerprint + "\n")


class Trainee(Protocol):
    """What ``fit`` needs to know about what it trains: a model family's spec
    (``llmworks.spec.Family``), or one model of the finetune stage."""

    name: str
    monitor: str  # validation metric, lower is better: picks best.ckpt
    divergence_hint: str  # what to change when training diverges


def read_stamp(ckpt: Path) -> dict[str, Any] | None:
    """The run stamp of a checkpoint (None when there is no checkpoint or it has no stamp).
    Loaded with ``weights_only=True``: a checkpoint is data, never code."""
    if not ckpt.is_file():
        return None
    try:
        stamp = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get(STAMP)
    except Exception as exc:
        raise LlmworksError(
            f"{ckpt} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}); it is "
            f"damaged. Delete it to train afresh (rm -r {ckpt.parent.parent}), or restore it"
        ) from exc
    return stamp if isinstance(stamp, dict) else None


def fingerprint(*parts: Any) -> str:
    """A stable hash of config values and data identifiers."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RunStamp(Callback):
    """Stamps every checkpoint with the run's fingerprint, W&B id and session, and with the
    random state, which a resume restores (dropout then draws what the uninterrupted run
    drew). Writes the CSV log out with it, so a resumed run's curve joins the interrupted
    one at the checkpoint. When a fresh run saves its first checkpoint, the files of older
    runs go (rank 0)."""

    def __init__(self, run: Run):
        self.run = run
        self._clean = run.resume_from is not None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        r = self.run
        checkpoint[STAMP] = {
            "fingerprint": r.fingerprint,
            "wandb_id": r.wandb_id,
            "session": r.session,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if not trainer.is_global_zero:
            return
        if not self._clean:
            r.drop_other_runs()
            self._clean = True
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        stamp = checkpoint.get(STAMP, {})
        if "rng" in stamp:
            torch.set_rng_state(stamp["rng"])
        if stamp.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(stamp["cuda_rng"])


def build_callbacks(
    cfg: DictConfig, family: Trainee, run: Run, module: L.LightningModule
) -> list[Callback]:
    """``cfg.callbacks`` instantiated (an entry set to null is left out), with what only the
    stage knows filled in where the config leaves it open: the checkpoint directory, the
    family's monitored metric, and how to count samples and tokens for throughput. Three
    more always run: the run stamp on checkpoints, the stop on a non-finite loss, and the
    save on preemption (SIGTERM, SLURM's SIGUSR1)."""
    callbacks: list[Callback] = [
        RunStamp(run),
        StopOnNonFiniteLoss(family.divergence_hint),
        SaveOnPreemption(run.checkpoints / LAST),
    ]
    terminal = sys.stdout.isatty()
    for name, node in cfg.callbacks.items():
        if node is None:
            continue
        try:
            cls = get_class(str(node._target_))
        except Exception as exc:
            raise LlmworksError(f"callbacks.{name}: {exc}") from exc
        # a progress bar for a terminal, log lines for a log file (dvc repro, SLURM, CI)
        if (
            issubclass(cls, ProgressBar)
            and not terminal
            or issubclass(cls, ProgressLog)
            and terminal
        ):
            continue
        extra: dict[str, Any] = {}
        if issubclass(cls, ModelCheckpoint):
            extra = {"dirpath": str(run.checkpoints)}
        if issubclass(cls, ModelCheckpoint | EarlyStopping) and node.get("monitor") is None:
            extra["monitor"] = family.monitor
        if issubclass(cls, ThroughputMonitor):
            extra |= {"batch_size_fn": module.samples_in_batch, "length_fn": module.tokens_in_batch}
        callbacks.append(_instantiate(node, f"callbacks.{name}", **extra))
    return callbacks


def build_trainer(
    cfg: DictConfig,
    schedule: DictConfig,
    callbacks: list[Callback],
    loggers: list[Any],
    root: Path,
    schedule_key: str = "<family>.train",
) -> L.Trainer:
    """``cfg.trainer`` (hardware and shared settings) with the family's ``train`` section (its
    schedule) as one ``lightning.Trainer``: every Trainer argument works from the command
    line, and a misspelled one fails."""
    check_trainer(cfg.trainer, schedule, schedule_key)
    schedule = OmegaConf.to_container(schedule, resolve=True)
    hardware: dict[str, Any] = {}
    strategy = cfg.trainer.strategy
    if isinstance(strategy, DictConfig) and strategy.get("data_parallel_size") == "auto":
        # FSDP over every process (Lightning's "auto" would shard only across nodes)
        node = OmegaConf.merge(strategy, {"data_parallel_size": world_size(cfg.trainer)})
        hardware["strategy"] = _instantiate(node, "trainer.strategy")
    return _instantiate(
        cfg.trainer,
        "trainer",
        **hardware,
        **schedule,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=str(root),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )


def world_size(trainer: DictConfig) -> int:
    """Processes the trainer settings ask for: devices per node (-1/auto: all GPUs, or one
    process on a CPU) times nodes."""
    devices = trainer.devices
    if not isinstance(devices, int) or devices < 0:
        devices = torch.cuda.device_count() if trainer.accelerator in ("gpu", "cuda") else 1
    return max(devices, 1) * int(trainer.num_nodes)


def _instantiate(node: DictConfig, where: str, **kwargs: Any) -> Any:
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise LlmworksError(f"{where}: {type(cause).__name__}: {cause}") from exc


@dataclass
class FitResult:
    """What ``fit`` hands back: the trainer, the run, its W&B logger (still open, for the
    final figures), the final validation metrics (every rank has them) and the run's CSV log
    merged over its sessions (rank 0)."""

    trainer: L.Trainer
    run: Run
    wandb: Any | None
    metrics: dict[str, float] = field(default_factory=dict)
    log: dict[int, dict[str, float]] = field(default_factory=dict)


def fit(
    cfg: DictConfig,
    family: Trainee,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    run_dir: Path,
    data_id: str,
    section: str | None = None,
    job: str | None = None,
) -> FitResult:
    """Train ``module`` on ``datamodule`` with ``cfg.trainer`` + ``cfg.<section>.train`` (the
    family's section, ``cfg.<family>``, by default), resuming the interrupted run of the same
    fingerprint, then validate the final weights. ``job`` names the W&B run's job
    (``train@<family>`` by default)."""
    key = section or family.name
    section = cfg[key]
    run = Run.open(
        run_dir,
        fingerprint(
            OmegaConf.to_container(section, resolve=True),
            OmegaConf.to_container(cfg.trainer, resolve=True),
            OmegaConf.to_container(cfg.callbacks, resolve=True),
            int(cfg.seed),
            data_id,
        ),
    )
    if run.resume_from is not None:
        log.info("resuming from %s (session %d of this run)", run.resume_from, run.session)
    callbacks = build_callbacks(cfg, family, run, module)
    csv_log = CrashSafeCSVLogger(save_dir=str(run.dir), name=CSV, version=run.csv_version)
    loggers: list[Any] = [csv_log]
    trainer = build_trainer(cfg, section.train, callbacks, loggers, run.dir, f"{key}.train")
    wb = None
    if trainer.global_rank == 0:  # known once the Trainer exists: one W&B run under DDP
        wb = wandb_logger(cfg, job or job_type(f"train@{family.name}"), run_id=run.wandb_id)
        if wb is not None:
            trainer.loggers = [*loggers, wb]
    try:
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(run.resume_from) if run.resume_from else None,
            weights_only=True,
        )
    except SIGTERMException as exc:  # Lightning's clean stop, which would exit with status 0
        saver = next(c for c in callbacks if isinstance(c, SaveOnPreemption))
        stop = saver.preempted(int(trainer.global_step))
        finish_wandb(wb, exit_code=stop.exit_code, preempted=True)
        raise stop from exc
    metrics = _scalars(trainer.callback_metrics)
    final = trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics |= _scalars(final[0] if final else {})
    result = FitResult(trainer, run, wb, metrics)
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.save()
        result.log = merge_sessions(run.session_logs())
    return result


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not torch.is_tensor(v) or v.numel() == 1}
