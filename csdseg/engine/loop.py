"""One training loop for every stage (CAM classifier, IRN, DeepLab).

What it guarantees:
- the data order is a pure function of (seed, epoch) and each sample's augmentation of
  (seed, epoch, index), so a run killed at any step and resumed from its last checkpoint ends
  with the same weights as an uninterrupted run;
- under ``torchrun`` each rank takes its slice of every global batch (DDP averages gradients),
  so N processes with batch B/N each reproduce one process with batch B;
- a non-finite loss stops training with a clear message, the last good checkpoint untouched.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from csdseg.engine import dist
from csdseg.engine.checkpoint import load_checkpoint, save_final, save_training_state, set_rng_state
from csdseg.engine.logger import RunLogger
from csdseg.engine.schedule import set_lr
from csdseg.engine.seed import worker_init
from csdseg.errors import StageError
from csdseg.engine.progress import progress_bar
from csdseg.runs import RunDir

log = logging.getLogger("csdseg.train")

StepFn = Callable[[nn.Module, dict[str, Any]], tuple[torch.Tensor, dict[str, float]]]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (epoch, index) keys: a seeded permutation per epoch, last partial batch dropped.

    ``start`` skips the batches a resumed run has already seen; each rank yields its slice.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start
        self.rank, self.world_size = dist.world()
        if batch_size % self.world_size:
            raise StageError(
                f"the global batch size {batch_size} is not divisible by the torchrun world size "
                f"{self.world_size}; choose a batch size that is a multiple of --nproc_per_node"
            )

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        per_rank = self.batch_size // self.world_size
        for b in range(self.start, self.n // self.batch_size):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            mine = batch[self.rank * per_rank:(self.rank + 1) * per_rank]
            yield [(self.epoch, i) for i in mine]


@dataclass
class TrainSpec:
    stage: str  # log/ckpt prefix, e.g. "train_cam"
    ckpt_name: str  # final weights at checkpoints/<ckpt_name>.pt
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dataset: Dataset  # __getitem__ takes an (epoch, index) key
    batch_size: int
    epochs: int
    lr_at: Callable[[int, int], float]  # (step, total_steps) -> lr
    step_fn: StepFn
    device: torch.device
    run: RunDir
    seed: int = 0
    amp: bool = False
    num_workers: int = 0
    max_steps: int = 0
    log_every: int = 20
    save_every: int = 200
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    collate_fn: Callable | None = None
    on_epoch_end: Callable[[int, int], dict[str, float] | None] | None = None
    # (the config a resumable checkpoint recorded, ``config``) -> the settings that differ; the
    # stages pass csdseg.config.fingerprint.resume_difference (old names, new defaults read)
    config_difference: Callable[[dict, dict], list[str]] = \
        lambda old, new: [] if old == new else ["config"]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def step_state(step_fn: StepFn) -> dict[str, Any]:
    """A step function that keeps state across steps (CSD's EMA teacher) has ``state_dict()``
    / ``load_state_dict()``; it goes into the resumable checkpoint, so a resumed run is exact."""
    return {"step_fn": step_fn.state_dict()} if hasattr(step_fn, "state_dict") else {}


def update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
           loss: torch.Tensor) -> None:
    """Backward and one optimiser step; with AMP's scaler, a step whose gradients are not
    finite is skipped and the scale lowered (bench/gpu_check.py times steps through this)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def train(spec: TrainSpec) -> dict[str, Any]:
    """Run (or resume) training; returns {"step", "epoch", "last": {scalars}}."""
    n = len(spec.dataset)
    steps_per_epoch = n // spec.batch_size
    if steps_per_epoch == 0:
        raise StageError(f"{spec.stage}: {n} training images is fewer than one batch of "
                         f"{spec.batch_size}; lower train.batch_size")
    total = spec.epochs * steps_per_epoch
    if spec.max_steps:
        total = min(total, spec.max_steps)
    last_path = spec.run.checkpoint(f"{spec.ckpt_name}_last")
    model = spec.model.to(spec.device)
    scaler = torch.amp.GradScaler("cuda") if spec.amp else None
    step = 0
    if last_path.is_file():
        state = load_checkpoint(last_path)
        differs = spec.config_difference(state.get("config") or {}, spec.config)
        if differs:
            raise StageError(f"{last_path} was written with other settings "
                             f"({', '.join(differs[:6])}{' ...' if len(differs) > 6 else ''}); "
                             "resume with the same config, or delete the checkpoint to start over")
        model.load_state_dict(state["model"])
        spec.optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if hasattr(spec.step_fn, "load_state_dict"):  # e.g. CSD's EMA teacher
            spec.step_fn.load_state_dict(state.get("extra", {}).get("step_fn", {}))
        step = state["step"]
        log.info("resuming %s from step %d/%d", spec.stage, step, total)
    if dist.joined():  # under torchrun, even with one process (csdseg.engine.dist)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[spec.device.index] if spec.device.type == "cuda" else None)
    logger = (RunLogger(spec.run.log(spec.stage), spec.run.tb(spec.stage), start_step=step)
              if dist.is_main() else None)
    scalars: dict[str, float] = {}
    model.train()
    try:
        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler = EpochBatchSampler(n, spec.batch_size, spec.seed, epoch, start=offset)
            # Its own generator: a DataLoader draws its workers' base seed from the global torch
            # RNG when an iterator starts, and a resumed run starts one mid-epoch, after the
            # RNG state was restored: stochastic layers (MCTformer's drop path) would then see
            # other numbers than in the uninterrupted run. Samples do not depend on it.
            loader = DataLoader(spec.dataset, batch_sampler=sampler, num_workers=spec.num_workers,
                                collate_fn=spec.collate_fn, worker_init_fn=worker_init,
                                pin_memory=spec.device.type == "cuda",
                                generator=torch.Generator().manual_seed(spec.seed * 10007 + epoch))
            bar = progress_bar(loader, desc=f"{spec.stage} epoch {epoch + 1}/{spec.epochs}",
                               disable=not dist.is_main(), leave=False)
            for batch in bar:
                set_lr(spec.optimizer, spec.lr_at(step, total))
                with torch.autocast(spec.device.type, enabled=spec.amp):
                    loss, scalars = spec.step_fn(model, _to_device(batch, spec.device))
                mean_loss = float(dist.mean_across(loss.detach()))
                if not math.isfinite(mean_loss):
                    raise StageError(f"{spec.stage}: the loss became {mean_loss} at step {step}; "
                                     f"lower the learning rate (the last good checkpoint "
                                     f"{last_path} is intact)")
                update(spec.optimizer, scaler, loss)
                step += 1
                scalars = {"loss": mean_loss, **scalars}
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                if logger and (step % spec.log_every == 0 or step == total):
                    logger.log(step, epoch=epoch, lr=spec.lr_at(step - 1, total), **scalars)
                epoch_end = step % steps_per_epoch == 0
                # the epoch's hook (validation) runs *before* its checkpoint: a run killed in
                # between resumes before the hook and redoes it, so no epoch loses its record
                if epoch_end and spec.on_epoch_end is not None:
                    extra = spec.on_epoch_end(epoch, step)
                    if logger and extra:
                        logger.log(step, kind="epoch", epoch=epoch, **extra)
                if step % spec.save_every == 0 or epoch_end or step == total:
                    if dist.is_main():
                        save_training_state(last_path, model, spec.optimizer, scaler, step,
                                            epoch, spec.config, extra=step_state(spec.step_fn))
                    dist.barrier()
                if step >= total:
                    break
    finally:
        if logger:
            logger.close()
    if dist.is_main():
        save_final(spec.run.checkpoint(spec.ckpt_name), model, spec.meta)
    dist.barrier()
    return {"step": step, "total": total, "last": scalars}
