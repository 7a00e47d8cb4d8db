"""The training loop shared by every method: SGD with warm-up + cosine, atomic checkpoints, resume.

A checkpoint is one safetensors file (model, optimiser and RNG tensors) whose metadata holds the
loop's JSON state, so writing it with robustad.files.atomic_write is atomic: a run killed at any
moment resumes from the last complete checkpoint.

Inside ``training_deadline(t)`` a run stops cleanly at an epoch boundary, checkpoint written,
rather than start an epoch it would not finish by time t (judged by the last epoch's length),
and raises TrainingPaused; the same call later resumes it. For batch jobs with a wall-time limit.

Under torchrun (robustad.distributed) every rank walks the same epoch order and takes its share of
each global batch of train.batch_size images; DistributedDataParallel averages the gradients; rank
0 writes the checkpoint, with every rank's random-generator state, so a resumed run is the same run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from tqdm.auto import tqdm

from robustad import distributed
from robustad.config import TrainConfig
from robustad.errors import CheckpointError, ConfigError, TrainingDivergedError, TrainingPaused
from robustad.files import atomic_write
from robustad.methods.adversarial import OverfitGuard
from robustad.methods.checkpoint import writable_folder
from robustad.provenance import RunRecord, summarize_changes

CHECKPOINT_NAME = "train_state.safetensors"

# Unix time by which training should stop; wall-clock, so a parent process can hand it to a child.
_DEADLINE: ContextVar[float | None] = ContextVar("robustad_training_deadline", default=None)
# where the loop reports its scalars (tag, value, step), e.g. robustad.monitor.TensorBoardLog.scalar
_MONITOR: ContextVar[Callable[[str, float, int], None] | None] = ContextVar("robustad_training_monitor", default=None)


@contextmanager
def training_monitor(report: Callable[[str, float, int], None] | None) -> Iterator[None]:
    """Within this block, train() reports every step's loss terms and learning rate as train/NAME and
    every epoch's means and images/s as epoch/NAME, with the global step (or epoch) as the step.
    Under torchrun only rank 0 reports. None: no reports."""
    token = _MONITOR.set(report)
    try:
        yield
    finally:
        _MONITOR.reset(token)


@contextmanager
def training_deadline(deadline: float | None) -> Iterator[None]:
    """Within this block, train() stops before an epoch that would end after `deadline` (Unix time).

    Every call trains at least one epoch, so calling again until it finishes always gets there.
    None: no limit.
    """
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class Objective(Protocol):
    """net: the module trained and checkpointed; step: the loss of one batch. An objective may also
    have set_progress(fraction), called before every step with step / total steps (e.g. to ramp eps)."""

    net: torch.nn.Module

    def step(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]: ...


@dataclass
class TrainReport:
    epochs: int
    steps: int
    seconds: float  # time spent in training steps (this process and resumed ones)
    images_per_second: float  # normal images consumed per second of training
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    distributed: dict | None = None  # world size, backend and BatchNorm handling when trained under torchrun
    guard: dict | None = None  # the overfitting guard's verdict (OverfitGuard.state()) when one watched



def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(net: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def train(
    objective: Objective,
    images: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    run: RunRecord | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    guard: OverfitGuard | None = None,
) -> TrainReport:
    """Train objective.net on normal images [N,C,H,W] (kept on the CPU, moved batch by batch).

    `run` says what this run is (robustad.provenance.RunRecord.of_training: method, config, a digest
    of the images); a checkpoint in checkpoint_dir resumes only a run with the same record.
    `guard` (robustad.methods.adversarial.OverfitGuard) is measured after every epoch while it
    watches; a collapse restores the weights and optimiser state from before that epoch.
    """
    run = run or RunRecord()
    ctx = distributed.current()
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    if world > 1:
        run = run.with_world_size(world)  # a checkpoint resumes only with as many ranks as wrote it
    net = objective.net.to(device)
    optimizer = make_optimizer(net, config)
    num_images = images.shape[0]
    batch_size = min(config.batch_size, num_images)
    if batch_size < world:
        raise ConfigError(f"a batch of {batch_size} images cannot be shared by {world} processes; "
                          "raise train.batch_size or launch fewer")
    steps_per_epoch = config.steps_per_epoch or max(1, num_images // batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = config.warmup_epochs * steps_per_epoch
    # rank 0 draws what a single process would; the others their own views, shifts and PGD starts
    generator = torch.Generator(device=device).manual_seed(config.seed + 1_000_003 * rank)
    order_generator = torch.Generator().manual_seed(config.seed)

    start_epoch, history, seconds = 0, [], 0.0
    path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    deadline = _DEADLINE.get()
    if deadline is not None and path is None:
        raise ConfigError("a training time limit needs a run folder to checkpoint into, so that the run can resume")
    if checkpoint_dir is not None:
        writable_folder(checkpoint_dir, "give the run another folder")
    if path is not None and path.exists():
        start_epoch, history, seconds, guard_state = _load_checkpoint(
            path, net, optimizer, generator, order_generator, run, config.epochs, rank)
        if guard is not None and guard_state is not None:
            guard.restore(guard_state)
        if log and rank == 0:
            log(f"resuming from {path} at epoch {start_epoch}/{config.epochs}")

    bar = tqdm(
        total=total_steps, initial=start_epoch * steps_per_epoch, desc="train", unit="step",
        disable=not progress or rank != 0, file=sys.stderr, dynamic_ncols=True,
    )
    net.train()
    if world > 1:
        # every call of objective.net goes through DDP, so the loss's backward averages gradients
        objective.net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    try:
        with distributed.batchnorm_across_ranks(net):
            start_epoch, history, seconds = _epochs(
                objective, optimizer, images, config, path, run, bar, start_epoch, history, seconds,
                steps_per_epoch, batch_size, total_steps, warmup_steps, generator, order_generator, deadline,
                rank, world, device, guard, log)
    finally:
        objective.net = net
    if world > 1:
        if not distributed.same_parameters(net):
            raise TrainingDivergedError(
                "the processes ended training with different weights: this method's objective calls its network "
                "in a way DistributedDataParallel does not see; train it in one process")
        distributed.broadcast_buffers(net)
    bar.close()
    net.eval()
    trained_steps = (config.epochs - start_epoch) * steps_per_epoch
    run_steps = len(history) * steps_per_epoch  # fewer than total_steps when a guard stopped training
    return TrainReport(
        epochs=len(history),
        steps=run_steps,
        seconds=seconds,
        images_per_second=run_steps * batch_size / seconds if seconds > 0 else float("nan"),
        history=history,
        resumed_from_epoch=start_epoch if trained_steps < total_steps else 0,
        distributed=ctx.describe() if ctx else None,
        guard={**guard.state(), "action": guard.action} if guard is not None else None,
    )


def _epochs(objective, optimizer, images, config, path, run, bar, start_epoch, history, seconds,
            steps_per_epoch, batch_size, total_steps, warmup_steps, generator, order_generator, deadline,
            rank, world, device, guard=None, log=None):
    """The epochs from start_epoch on; returns (start_epoch, history, seconds) for the report."""
    num_images = images.shape[0]
    monitor = _MONITOR.get() if rank == 0 else None
    for epoch in range(start_epoch, config.epochs):
        if guard is not None and guard.stopped:
            break
        # the state a collapse returns to (cheap: one copy of the weights and optimiser)
        before = (copy.deepcopy(net_of(objective).state_dict()), copy.deepcopy(optimizer.state_dict())) \
            if guard is not None and guard.watching else None
        order = _epoch_order(num_images, steps_per_epoch * batch_size, order_generator)
        sums: dict[str, float] = {}
        started = time.perf_counter()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, warmup_steps, config.lr)
            x = images[order[i * batch_size : (i + 1) * batch_size][rank::world]].to(device, non_blocking=True)
            if hasattr(objective, "set_progress"):
                objective.set_progress(step / total_steps)
            metrics = training_step(objective, optimizer, x, generator, f"epoch {epoch + 1}, step {i + 1}")
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            if monitor is not None:
                monitor("train/lr", optimizer.param_groups[0]["lr"], step + 1)
                for key, value in metrics.items():
                    monitor(f"train/{key}", value, step + 1)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{metrics['loss']:.3f}")
        history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}})
        if before is not None:
            _guard_epoch(guard, objective, optimizer, before, epoch + 1, history[-1], rank, log)
        seconds += time.perf_counter() - started  # the guard's probe is part of the training cost
        if monitor is not None:
            for key, value in history[-1].items():
                if key != "epoch":
                    monitor(f"epoch/{key}", value, epoch + 1)
            monitor("epoch/images_per_second", steps_per_epoch * batch_size / max(1e-9, time.perf_counter() - started),
                    epoch + 1)
        last = epoch + 1 == config.epochs or (guard is not None and guard.stopped)
        # the next epoch would end after the deadline if it takes as long as this one did
        pause = deadline is not None and not last and time.time() + (time.perf_counter() - started) > deadline
        pause = not distributed.all_agree(not pause)  # one rank out of time pauses them all
        if path is not None and ((epoch + 1) % config.checkpoint_every == 0 or last or pause):
            _save_checkpoint(path, net_of(objective), optimizer, generator, order_generator, epoch + 1, history,
                             seconds, run, rank == 0, guard.state() if guard is not None else None)
        if pause:
            bar.close()
            raise TrainingPaused(
                f"training stopped after epoch {epoch + 1} of {config.epochs} to keep within its time limit; "
                f"the checkpoint is {path}: run the same command again to continue from there",
                epoch + 1, config.epochs, path,
            )
    return start_epoch, history, seconds


def _guard_epoch(guard, objective, optimizer, before, epoch, record, rank, log) -> None:
    """Measure the guard after `epoch` (figures go into its history record as guard_*); on a collapse
    (any rank's verdict counts for all), put back the weights and optimiser state from before it."""
    net = net_of(objective)
    was_training = net.training
    net.eval()
    try:
        figures = guard.measure(epoch)
    finally:
        net.train(was_training)
    record.update({f"guard_{k}": float(v) for k, v in figures.items()})
    collapsed = not distributed.all_agree(not guard.collapsed(figures))
    if not collapsed:
        return
    net.load_state_dict(before[0])
    optimizer.load_state_dict(before[1])
    what = guard.react(epoch)
    record["guard_collapsed"] = 1.0
    if log and rank == 0:
        log(f"catastrophic overfitting after epoch {epoch}: held-out robustness under PGD fell to "
            f"{figures['pgd']:.3f} from {guard.best:.3f}; that epoch's updates are discarded and training {what}")


def net_of(objective) -> torch.nn.Module:
    """The network itself, whether or not DistributedDataParallel wraps it for training."""
    net = objective.net
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def training_step(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    generator: torch.Generator | None,
    where: str = "",
) -> dict:
    """One optimiser step on the batch x (fp32: see benchmarks/gradient_precision.py); returns its metrics."""
    loss, metrics = objective.step(x, generator)
    if not distributed.all_agree(bool(torch.isfinite(loss))):  # all ranks stop together
        raise TrainingDivergedError(
            f"training loss became {float(loss.detach())}{' at ' + where if where else ''} (that step was not applied); "
            "lower train.lr or check the input images"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return metrics


def _epoch_order(num_images: int, needed: int, generator: torch.Generator) -> torch.Tensor:
    """Shuffled indices, repeated when an epoch asks for more samples than there are images."""
    repeats = -(-needed // num_images)
    return torch.cat([torch.randperm(num_images, generator=generator) for _ in range(repeats)])[:needed]


def _save_checkpoint(path, net, optimizer, generator, order_generator, epoch, history, seconds, run,
                     write: bool = True, guard_state: dict | None = None):
    """Write the checkpoint (on rank 0: write=True); under torchrun every rank must call this."""
    states = distributed.gather_rows(generator.get_state().unsqueeze(0))  # one row per rank
    if not write:
        distributed.barrier()  # matches rank 0's after its write
        return
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["rng.generator"] = states[0][0]
    for r, state in enumerate(states[1:], start=1):
        tensors[f"rng.generator.rank{r}"] = state[0]
    tensors["rng.order"] = order_generator.get_state()
    state = {
        "epoch": epoch,
        "history": history,
        "seconds": seconds,
        "run": run.to_dict(),
        "optimizer_scalars": scalars,
    }
    if guard_state is not None:
        state["guard"] = guard_state
    text = json.dumps(state)
    atomic_write(path, save_tensors(tensors, metadata={"robustad_train_state": text,
                                                       "robustad_train_sha256": _state_digest(tensors, text)}))
    distributed.barrier()  # under torchrun, no rank runs ahead of (or exits before) the written checkpoint


def _state_digest(tensors: dict[str, torch.Tensor], state_text: str) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and the state's JSON: any edit shows."""
    h = hashlib.sha256(state_text.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _damaged(path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} is damaged or was edited ({what}); delete it to start the training over")


def _check_state(path, state, total_epochs: int) -> None:
    """The fields resume reads, with the types and ranges training can continue from."""
    if not isinstance(state, dict):
        raise _damaged(path, "its state is not a mapping")
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= total_epochs:
        raise _damaged(path, f"epoch {epoch!r} is not a whole number from 1 to this run's {total_epochs} epochs")
    history = state.get("history")
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(h, dict) for h in history):
        raise _damaged(path, f"its history should list one mapping per finished epoch ({epoch})")
    seconds = state.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise _damaged(path, f"seconds {seconds!r} is not a time")
    scalars = state.get("optimizer_scalars")
    if not isinstance(scalars, dict) or not all(
            re.fullmatch(r"\d+\.\w+", str(k)) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) for k, v in scalars.items()):
        raise _damaged(path, "its optimizer scalars are not numbers keyed by parameter")
    guard = state.get("guard")
    if guard is not None and not (
            isinstance(guard, dict) and (guard.get("best") is None or _is_number(guard["best"]))
            and (guard.get("collapsed_at") is None or (isinstance(guard["collapsed_at"], int)
                                                       and not isinstance(guard["collapsed_at"], bool)))
            and isinstance(guard.get("stopped", False), bool)):
        raise _damaged(path, "its overfitting guard's state is not a best figure, an epoch and a flag")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load_checkpoint(path, net, optimizer, generator, order_generator, run, total_epochs: int, rank: int = 0):
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        text = metadata["robustad_train_state"]
        state = json.loads(text)
    except (SafetensorError, KeyError, json.JSONDecodeError, RecursionError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable robustad training checkpoint ({type(err).__name__}: {err}); "
            "delete it to start over"
        ) from None
    expected = metadata.get("robustad_train_sha256")
    if expected is None:
        raise _damaged(path, "it has no checksum: an older robustad wrote it, or it was rewritten")
    if _state_digest(tensors, text) != expected:
        raise _damaged(path, "its weights or state do not match the checksum written with them")
    try:
        changes = RunRecord.from_dict(state.get("run")).changes(run, strict=True)
    except ValueError:
        changes = ["an older robustad"]
    if changes:
        what = summarize_changes(changes)
        raise CheckpointError(
            f"{path} belongs to another training run ({what}): other images, config or robustad "
            "version. Use a new output folder, or delete the checkpoint to start over"
        )
    _check_state(path, state, total_epochs)
    try:
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        net.load_state_dict(model_state)
        optimizer_state = optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                optimizer_state["state"].setdefault(int(index), {})[name] = value
        for key, value in state["optimizer_scalars"].items():
            index, name = key.split(".", 1)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
        optimizer.load_state_dict(optimizer_state)
        generator.set_state(tensors["rng.generator" if rank == 0 else f"rng.generator.rank{rank}"])
        order_generator.set_state(tensors["rng.order"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise _damaged(path, f"its tensors do not fit this run: {first}") from None
    return state["epoch"], state["history"], state["seconds"], state.get("guard")
