"""Training one detector on several processes with PyTorch's launcher (torchrun).

``torchrun --nproc-per-node N -m robustad train ...`` sets RANK, WORLD_SIZE and the rendezvous in
the environment; ``init_from_environment`` joins the process group (gloo on the CPU, NCCL on CUDA).
Every rank loads the same data and computes the same epoch order; each takes its share of every
global batch, DistributedDataParallel averages the gradients, and rank 0 alone writes files.
Without torchrun (WORLD_SIZE unset or 1) nothing here changes what a run does.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from robustad.errors import ConfigError

__all__ = [
    "Context", "current", "init_from_environment", "is_main", "shutdown", "end_process", "all_agree", "barrier",
    "gather_contrastive", "gather_rows", "map_batches", "same_parameters", "broadcast_buffers",
    "batchnorm_across_ranks", "BATCHNORM",
]

# how training under torchrun normalises (see batchnorm_across_ranks), as detector.json records it
BATCHNORM = "statistics of the global batch (summed across ranks), as one process computes them"

# the collectives with gradients (torch.distributed.nn.functional) are the public ones in this torch; their
# suggested replacement is a private module, so their deprecation notice would only be noise in every run
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_(reduce|gather) is deprecated",
                        category=FutureWarning)

# a rank that waits longer than this for the others gives up with an error instead of hanging
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "batchnorm": BATCHNORM}


def _env_int(name: str, environ) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} in the environment is not a whole number; "
                          "launch with torchrun, which sets it") from None


def init_from_environment(device: str = "cpu", environ=None) -> Context | None:
    """Join the process group torchrun describes in the environment; None when not under torchrun.

    device: the training device (config train.device); CUDA ranks use NCCL and their LOCAL_RANK's
    GPU, CPU ranks gloo.
    """
    environ = os.environ if environ is None else environ
    world = _env_int("WORLD_SIZE", environ)
    if world is None or world <= 1:
        return None
    rank, local_rank = _env_int("RANK", environ), _env_int("LOCAL_RANK", environ) or 0
    if rank is None or not 0 <= rank < world:
        raise ConfigError(f"RANK={environ.get('RANK')!r} with WORLD_SIZE={world}: launch with torchrun")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return current()


def current() -> Context | None:
    """The process group this process trains in, or None (a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0) or 0),
                   dist.get_backend())


def is_main() -> bool:
    """True on rank 0 and in a single process: the process that writes files and prints."""
    ctx = current()
    return ctx is None or ctx.rank == 0


_joined = False  # this process has been in a process group of two or more ranks


def shutdown() -> None:
    global _joined
    if dist.is_available() and dist.is_initialized():
        _joined = _joined or dist.get_world_size() > 1
        dist.destroy_process_group()


def end_process(code: int) -> None:
    """Exit with `code`; a process that has trained under torchrun skips the interpreter's teardown.

    destroy_process_group leaves gloo's worker threads running (torch 2.13), and a worker may still be
    releasing the last collective's tensors when the interpreter finalises; it then cannot take the GIL
    and aborts the whole process with SIGABRT after the work is done (core dumps show
    ProcessGroupGloo::AsyncWork's destructor). Files are written and closed by then, so the rank
    flushes its output and leaves at once.
    """
    if _joined:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _collective_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (nothing in a single process)."""
    if current() is not None:
        dist.barrier()


def all_agree(flag: bool) -> bool:
    """True when `flag` is true on every rank (every rank must call this together)."""
    if current() is None:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() == 0.0)


def gather_rows(t: torch.Tensor, dim: int = 0) -> list[torch.Tensor]:
    """Every rank's `t` (sizes along `dim` may differ between ranks), in rank order."""
    ctx = current()
    if ctx is None:
        return [t]
    device = _collective_device()
    local = t.detach().to(device).contiguous()
    sizes = torch.tensor([local.shape[dim]], device=device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(ctx.world_size)]
    dist.all_gather(all_sizes, sizes)
    longest = int(max(s.item() for s in all_sizes))
    pad_shape = list(local.shape)
    pad_shape[dim] = longest - local.shape[dim]
    padded = torch.cat([local, local.new_zeros(pad_shape)], dim=dim)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return [p.narrow(dim, 0, int(s.item())).to(t.device) for p, s in zip(parts, all_sizes)]


def map_batches(fn: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor, batch_size: int,
                dims: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
    """[fn(batch) for batch in x.split(batch_size)], the batches shared out over the ranks.

    fn returns a tuple of tensors whose batch dimensions are `dims`. Rank r computes batches r,
    r + W, ...; the results are gathered so that every rank returns the whole list, as one process
    would compute it (the batches are the same, so per-batch randomness is too).
    """
    batches = list(x.split(batch_size))
    ctx = current()
    if ctx is None or len(batches) < ctx.world_size:  # too few to share: every rank computes them all
        return [tuple(fn(b)) for b in batches]
    mine = [tuple(fn(batches[i])) for i in range(ctx.rank, len(batches), ctx.world_size)]
    gathered = [gather_rows(torch.cat([m[j] for m in mine], dim=d), d) for j, d in enumerate(dims)]
    out: list = [None] * len(batches)
    for r in range(ctx.world_size):
        owned = list(range(r, len(batches), ctx.world_size))
        sizes = [batches[i].shape[0] for i in owned]
        pieces = [g[r].split(sizes, dim=d) for g, d in zip(gathered, dims)]
        for k, i in enumerate(owned):
            out[i] = tuple(p[k] for p in pieces)
    return out


# instance ids of rank r are shifted by r * this, so that images of different ranks never share one
INSTANCE_OFFSET = 1 << 24


def gather_contrastive(z: torch.Tensor, batch):
    """Every rank's features and tags, so that the contrastive loss sees the whole global batch's
    negatives as one process would (SimCLR's global batch). z's gradient flows back through the
    gather: all_gather's backward sums each rank's gradient for this rank's rows, and
    DistributedDataParallel's mean over ranks then gives the single-process gradient.
    `batch` has the fields images, instance_ids, shift_ids, view_ids, is_clean; a single process
    (or ranks with unequal shares) get their own back unchanged."""
    ctx = current()
    if ctx is None:
        return z, batch
    sizes = gather_rows(torch.tensor([z.shape[0]], device=z.device))
    if len({int(s.item()) for s in sizes}) != 1:
        return z, batch  # all_gather needs equal shares: keep this rank's negatives only
    from torch.distributed.nn.functional import all_gather as all_gather_with_grad

    z_all = torch.cat(all_gather_with_grad(z.contiguous()))

    def gathered(t: torch.Tensor, offset: int = 0) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(ctx.world_size)]
        dist.all_gather(parts, (t + offset * ctx.rank).contiguous() if offset else t.contiguous())
        return torch.cat(parts)

    tags = type(batch)(
        images=batch.images[:0],  # the loss reads tags only
        instance_ids=gathered(batch.instance_ids, INSTANCE_OFFSET),
        shift_ids=gathered(batch.shift_ids),
        view_ids=gathered(batch.view_ids),
        is_clean=gathered(batch.is_clean.to(torch.uint8)).bool(),
    )
    return z_all, tags


def same_parameters(module: torch.nn.Module) -> bool:
    """Whether every rank holds the same parameters (a checksum compared across ranks)."""
    if current() is None:
        return True
    with torch.no_grad():
        total = sum((p.detach().double().sum() + p.detach().double().abs().sum()) for p in module.parameters())
        t = torch.tensor([float(total)], dtype=torch.float64, device=_collective_device())
    lo, hi = t.clone(), t.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(lo.item() == hi.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics)."""
    if current() is None:
        return
    for buffer in module.buffers():
        device = _collective_device()
        moved = buffer.data.to(device)
        dist.broadcast(moved, 0)
        buffer.data.copy_(moved.to(buffer.device))


def _across_ranks_forward(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm whose training-mode statistics are those of every rank's batch together.

    Two all-reduces with gradients: the sums (-> the global mean), then the squared deviations from
    it (-> the global biased variance, two-pass for accuracy). The reduces' backward sums each rank's
    gradient, the same convention as gather_contrastive, so DistributedDataParallel's mean over ranks
    gives one process's gradient. Running statistics follow torch's rule (momentum, or the cumulative
    average when momentum is None; unbiased variance), identically on every rank.
    """
    if not bn.training:
        return type(bn).forward(bn, x)
    from torch.distributed.nn.functional import all_reduce as all_reduce_with_grad

    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
    total = all_reduce_with_grad(torch.cat([x.sum(dims), count]))
    n = total[-1]
    mean = total[:-1] / n
    centred = x - mean.view(shape)
    var = all_reduce_with_grad(centred.pow(2).sum(dims)) / n
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            unbiased = var * n / (n - 1).clamp_min(1)
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            bn.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
    out = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


@contextmanager
def batchnorm_across_ranks(module: torch.nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm of ``module`` normalises a training batch with the statistics of the
    global batch, as one process would (SyncBatchNorm's job; torch's SyncBatchNorm has no CPU kernel,
    so this works on gloo and NCCL alike). Eval mode is untouched. Every rank must make the same
    training-mode forward calls, as the training loop does. A no-op outside torchrun."""
    if current() is None:
        yield
        return
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.forward = types.MethodType(_across_ranks_forward, bn)
    try:
        yield
    finally:
        for bn in norms:
            del bn.forward  # the class's own forward again
