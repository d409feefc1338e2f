"""Self-supervised pretraining of a backbone, on one process or many (``torchrun``), resumable exactly.

One engine (data mixture, DDP, schedules, checkpoints, logs, export) runs any method of
:mod:`surgenet.train.methods` (``config.method``: dino, byol, simclr, msn) as a plugin that
brings its networks, views, loss and target update.

``pretrain(config, out_dir)`` is what ``surgenet-train pretrain`` runs. The out folder receives
``config.yaml``, ``run.json``, ``log.jsonl`` (one record per logged step), ``checkpoint.pth``
(the latest full state) and ``teacher/`` (the backbone the run delivers, in the zoo's format:
the EMA teacher of DINO, BYOL and MSN, SimCLR's only network).
Rank 0 writes them; on several nodes ``--out`` must be a shared folder, so that every rank
reads the same checkpoint on ``--resume``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..devices import cpu_has_native_bf16
from ..exceptions import InputError, SurgeNetError
from ..zoo.registry import get_entry
from . import distributed as D
from .run_state import capture_rng, load_checkpoint, restore_rng, save_checkpoint, seed_everything
from ..evaluation.probes import EVAL_METHODS
from .config import PretrainConfig, check_numbers, to_dict
from .data import Mixture, MultiCropDataset, StepSampler, collate_crops, open_source
from .dino.optim import clip_gradients, set_hyperparameters
from .teacher_export import export_teacher
from .methods import method_class
from .methods.base import PretrainMethod
from .resume import check_resumed_settings
from .runlog import LOG_FILE, MetricLog, write_run_info

logger = logging.getLogger(__name__)

# Keys a resumed run may change; any other difference would change the run being resumed.
RESUMABLE_CHANGES = ("train.max_steps", "train.checkpoint_every", "train.log_every", "train.keep_every_epochs",
                     "data.num_workers", "train.device")
# The periodic evaluation reads the teacher and draws no random numbers: a resumed run may add
# or change it without changing the training.
RESUMABLE_SECTIONS = ("eval.",)  # a name ending in "." allows the whole section


def build_networks(config: PretrainConfig):
    """DINO's student (with drop path) and teacher (without), equal weights, each with its head."""
    from .methods.dino import build_networks as dino_networks

    return dino_networks(config, get_entry(config.model.name))


def build_optimizer(config: PretrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """``optim.optimizer``: AdamW (DINO, BYOL, MSN), LARS (SimCLR's large batches) or SGD; the
    learning rate and weight decay are set at every step from the schedules."""
    name = config.optim.optimizer
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    if name == "lars":
        from lightly.utils.lars import LARS

        return LARS(groups, lr=0.0, momentum=config.optim.sgd_momentum, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=config.optim.sgd_momentum, weight_decay=0.0)
    raise InputError(f"optim.optimizer must be adamw, lars or sgd, not {name!r}.")


def build_mixture(config: PretrainConfig) -> Mixture:
    if not config.data.sources:
        raise InputError("no training data: pass --data PATH (a frame folder, a frame list or videos).")
    sources = [open_source(s.path, s.fps or config.data.fps) for s in config.data.sources]
    return Mixture(sources, [s.weight for s in config.data.sources], config.data.samples_per_epoch,
                   seed=config.train.seed)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype; None is full fp32.

    ``auto`` is fp16 (with loss scaling) on GPU, as the SurgeNet runs, and bf16 on a CPU that
    computes it natively. On CPUs without bf16 units autocast emulates it at a tenth of the fp32
    speed, so ``auto`` stays in fp32 there; ``bf16`` forces it.
    """
    if name == "auto":
        if device.type == "cuda":
            name = "fp16"
        else:
            name = "bf16" if cpu_has_native_bf16() else "fp32"
            if name == "fp32":
                logger.info("this CPU has no native bf16: training in fp32 (train.precision=bf16 forces bf16)")
    if name == "fp16" and device.type != "cuda":
        raise InputError("fp16 mixed precision needs a GPU; use train.precision=bf16 or fp32 on CPU.")
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
    if name not in table:
        raise InputError(f"train.precision must be auto, fp16, bf16 or fp32, not {name!r}.")
    return table[name]


class Pretrainer:
    """The state of one process of a pretraining run and the loop that advances it."""

    def __init__(self, config: PretrainConfig, out_dir: str | Path, resume: bool = False) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        # A resumed run's settings are checked before any network or data is built.
        saved = load_checkpoint(self.out_dir) if resume else None
        if saved is not None:
            check_resumed_settings(saved.get("config") or {}, config, RESUMABLE_CHANGES + RESUMABLE_SECTIONS,
                                   fix="drop them from the command line (the saved config is used), or use a new --out")
        self.dist = D.init_distributed(config.train.device)
        self.device = self.dist.device
        self.autocast_dtype = resolve_precision(config.train.precision, self.device)
        seed_everything(config.train.seed)  # the same initial weights on every rank
        entry = get_entry(config.model.name)
        plugin = method_class(config.method)
        self.mixture = build_mixture(config)
        probe = StepSampler(self.mixture, config.train.batch_size, config.train.epochs, self.dist.rank,
                            self.dist.world_size)
        self.steps_per_epoch, self.total_steps = probe.steps_per_epoch, probe.total_steps

        self.method: PretrainMethod = plugin(config, entry)
        self.multicrop = self.method.views()
        self.schedules = self.method.schedules(config.train.epochs, self.steps_per_epoch, config.train.batch_size)
        self.student, self.teacher, self.loss_fn = self.method.student, self.method.teacher, self.method.loss_fn
        seed_everything(config.train.seed + self.dist.rank)  # ranks differ in drop path, not in data
        self.method.to(self.device)
        self.optimizer = build_optimizer(config, self.method.param_groups())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step = 0
        self.resumed = resume
        if saved is not None:
            self._load(saved)
        self.model = self.student
        if self.dist.enabled:
            # CAFormer's depthwise convolutions return channels-last gradients that DDP copies into
            # its contiguous buckets: correct, only slightly slower, so the warning is noise here.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.method.prepare_distributed(self.device)
            self.model = DistributedDataParallel(self.student, device_ids=ids)

    # ----------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        rng = capture_rng()
        if self.dist.enabled:
            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rng)
            rng_states = gathered
        else:
            rng_states = [rng]
        state = {"step": self.step, "epoch": self.step // self.steps_per_epoch, "config": to_dict(self.config),
                 "method": self.config.method, "world_size": self.dist.world_size,
                 "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "loss": self.loss_fn.state_dict(), "rng": rng_states}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        return state

    def _load(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loss_fn.load_state_dict(state["loss"])
        self.step = int(state["step"])
        if state["world_size"] == self.dist.world_size:
            restore_rng(state["rng"][self.dist.rank])
        else:
            logger.warning("resuming on %d processes a run saved on %d: data order and schedules are kept, "
                           "drop-path randomness is not", self.dist.world_size, state["world_size"])
        logger.info("resumed from step %d", self.step)

    def save(self) -> None:
        state = self.state()  # a collective call: every rank takes part
        if self.dist.is_main:
            epoch = self.step // self.steps_per_epoch
            keep = self.config.train.keep_every_epochs
            extra = (f"checkpoint_epoch{epoch:04d}.pth" if keep and self.step % self.steps_per_epoch == 0
                     and epoch % keep == 0 else None)
            save_checkpoint(state, self.out_dir, extra)
            export_teacher(self.method.result_backbone().model, self.config.model.name, self.out_dir / "teacher",
                           {"step": self.step, "epoch": epoch, "method": self.config.method,
                            "network_kwargs": self.config.model.network_kwargs})
        D.barrier()

    # ------------------------------------------------------------------ loop
    def loader(self, end: int) -> torch.utils.data.DataLoader:
        sampler = StepSampler(self.mixture, self.config.train.batch_size, self.config.train.epochs, self.dist.rank,
                              self.dist.world_size, start_step=self.step, stop_step=end)
        dataset = MultiCropDataset(self.mixture, self.multicrop, seed=self.config.train.seed)
        workers = self.config.data.num_workers
        # Own generator: creating the iterator must not draw from the global torch RNG, or a
        # resumed run would see different drop-path masks than an uninterrupted one.
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_crops,
            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(0),
            persistent_workers=False, prefetch_factor=4 if workers else None)

    def train_step(self, crops: list[torch.Tensor]) -> dict[str, float]:
        values = self.schedules.at(self.step)
        set_hyperparameters(self.optimizer, values["lr"], values["weight_decay"])
        crops = [c.to(self.device, non_blocking=True) for c in crops]
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        with autocast:
            outputs = self.method.forward(self.model, crops, values)
        loss, metrics = self.method.compute_loss(outputs, values, len(crops))
        if not torch.isfinite(loss):
            raise SurgeNetError(f"the {self.config.method.upper()} loss is {loss.item()} at step {self.step}; lower "
                                "optim.lr or optim.clip_grad, or use train.precision=fp32, and resume from the last "
                                "checkpoint.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.student, self.config.optim.clip_grad)
        self.method.after_backward(self.step // self.steps_per_epoch)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_step(values)
        return {"loss": loss.item(), **{k: float(v) for k, v in metrics.items()}, **values}

    def run(self) -> list[dict[str, Any]]:
        """Train until the last step (or ``train.max_steps``); returns the logged records."""
        cfg = self.config.train
        end = self.total_steps if cfg.max_steps is None else min(self.total_steps, cfg.max_steps)
        # Resumed: the log keeps the records up to the checkpoint's step, the steps after it run again.
        log = (MetricLog(self.out_dir / LOG_FILE, resume_at=self.step if self.resumed else None)
               if self.dist.is_main else None)
        if self.dist.is_main:
            write_run_info(self.out_dir, self.config, self.dist.world_size,
                           {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                            "resumed_at": self.step})
        records: list[dict[str, Any]] = []
        bar = _progress(self.step, end, self.dist.is_main, self.config.method.upper())
        tic, logged_at = time.perf_counter(), self.step
        try:
            for crops, skipped in self.loader(end):
                metrics = self.train_step(crops)
                self.step += 1
                skipped = D.all_reduce_sum(skipped, self.device)
                if self.step % cfg.log_every == 0 or self.step == end or skipped:
                    now = time.perf_counter()
                    metrics = D.all_reduce_mean(metrics, self.device)
                    record = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch, **metrics,
                              "skipped": skipped, "images_per_s": cfg.batch_size * (self.step - logged_at)
                              / max(now - tic, 1e-9)}
                    tic, logged_at = now, self.step
                    records.append(record)
                    if log:
                        log.write(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                    **{k: f"{metrics[k]:.3f}" for k in self.method.progress_keys if k in metrics})
                epoch_end = self.step % self.steps_per_epoch == 0
                periodic = cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0
                if periodic or epoch_end or self.step == end:
                    self.save()
                if epoch_end and self._eval_due():
                    self.evaluate(log)
        finally:
            if bar is not None:
                bar.close()
            if log:
                log.close()
        return records

    def _eval_due(self) -> bool:
        e = self.config.eval
        epoch = self.step // self.steps_per_epoch
        return bool(e.train and e.val and e.every_epochs and epoch % e.every_epochs == 0)

    def evaluate(self, log: MetricLog | None) -> None:
        """kNN and/or linear-probe accuracy (``eval.method``) of the teacher backbone on the
        configured labelled frames (main process), logged as ``knn_top1``, ``linear_top1``, ..."""
        if self.dist.is_main:
            from ..evaluation.probes import probe_evaluate

            e = self.config.eval
            entry = get_entry(self.config.model.name)
            results = probe_evaluate(self.method.result_backbone(), e.train, e.val, e.method, image_size=e.image_size,
                                     k=e.k, temperature=e.temperature, linear_epochs=e.linear_epochs,
                                     linear_lr=e.linear_lr, mean=entry.mean, std=entry.std)
            record: dict[str, Any] = {"step": self.step, "epoch": self.step // self.steps_per_epoch - 1}
            for method, result in results.items():
                record.update({f"{method}_{name}": value for name, value in result.items()})
                logger.info("%s top-1 %.4f at step %d", method, result["top1"], self.step)
            if log:
                log.write(record)
        D.barrier()


def _progress(start: int, end: int, enabled: bool, desc: str = "DINO"):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # a core dependency

    return tqdm(total=end, initial=start, desc=desc, unit="step", dynamic_ncols=True)


def pretrain(config: PretrainConfig, out_dir: str | Path, resume: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) pretraining with ``config.method``; returns the logged metric records of this process."""
    if config.train.batch_size <= 0 or config.train.epochs <= 0:
        raise InputError("train.batch_size and train.epochs must be positive.")
    if not math.isfinite(config.optim.lr) or config.optim.lr <= 0:
        raise InputError(f"optim.lr must be a positive number, not {config.optim.lr}.")
    check_numbers(config)  # the table of bounds (a config built in Python, not read by load_config)
    method_class(config.method)  # an unknown method fails before any work
    if config.eval.method not in EVAL_METHODS:
        raise InputError(f"eval.method must be one of {', '.join(EVAL_METHODS)}, not {config.eval.method!r}.")
    trainer = Pretrainer(config, out_dir, resume=resume)
    try:
        return trainer.run()
    finally:
        D.shutdown()
