"""Training under torchrun: the collective helpers on a two-process gloo group, and the CLI end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import roc_auc_score

from robustad import distributed
from robustad.data.datasets import load_split
from robustad.methods.registry import load_detector

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def test_a_single_process_is_its_own_main_rank():
    assert distributed.current() is None and distributed.is_main()
    assert distributed.init_from_environment("cpu", environ={}) is None
    assert distributed.init_from_environment("cpu", environ={"WORLD_SIZE": "1"}) is None
    x = torch.arange(10.0)
    assert [b[0].tolist() for b in distributed.map_batches(lambda b: (b * 2,), x, 4, dims=(0,))] == [
        [0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]


def test_a_malformed_launch_environment_is_refused():
    from robustad.errors import ConfigError

    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.init_from_environment("cpu", environ={"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="RANK"):
        distributed.init_from_environment("cpu", environ={"WORLD_SIZE": "2", "RANK": "5"})


def _helpers_on_two_ranks(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        ctx = distributed.current()
        assert ctx is not None and (ctx.rank, ctx.world_size) == (rank, 2)
        assert distributed.is_main() == (rank == 0)
        # rows of different lengths come back whole and in rank order
        parts = distributed.gather_rows(torch.full((rank + 1, 3), float(rank)))
        assert [tuple(p.shape) for p in parts] == [(1, 3), (2, 3)] and parts[1].eq(1).all()
        # batches shared out and gathered equal what one process computes, batch by batch
        x = torch.arange(22.0).view(11, 2)

        def fn(b):
            return b.sum(1) * 10, b.t()  # batch dimension 0 and 1

        shared = distributed.map_batches(fn, x, 3, dims=(0, 1))
        alone = [fn(b) for b in x.split(3)]
        assert len(shared) == len(alone) == 4
        for (a0, a1), (b0, b1) in zip(shared, alone):
            assert torch.equal(a0, b0) and torch.equal(a1, b1)
        assert distributed.all_agree(True) and not distributed.all_agree(rank == 0)
        net = torch.nn.Linear(2, 2)
        with torch.no_grad():
            net.weight.fill_(1.0)
            net.bias.fill_(float(rank))
        assert not distributed.same_parameters(net)
        # the contrastive loss's gather: whole global batch, instance ids kept apart, gradients back to each rank
        from robustad.methods.cobra.objective import TaggedBatch

        z = torch.full((3, 2), float(rank + 1), requires_grad=True)
        ids = torch.tensor([0, 1, 1])
        local = TaggedBatch(torch.zeros(3, 1, 2, 2), ids, torch.tensor([0, 1, 0]), torch.zeros(3, dtype=torch.long),
                            torch.tensor([True, True, False]))
        z_all, tags = distributed.gather_contrastive(z, local)
        assert z_all.shape == (6, 2) and z_all[:3].eq(1).all() and z_all[3:].eq(2).all()
        assert tags.instance_ids.tolist() == [0, 1, 1, *(i + distributed.INSTANCE_OFFSET for i in (0, 1, 1))]
        assert tags.is_clean.tolist() == [True, True, False] * 2 and tags.shift_ids.tolist() == [0, 1, 0] * 2
        weights = torch.arange(12.0).view(6, 2)
        (z_all.pow(2) * weights).sum().backward()
        # every rank computes the same loss, so each rank's rows get the sum over ranks: world x one process's
        mine = weights[3 * rank:3 * rank + 3]
        assert torch.allclose(z.grad, 2 * 2 * z.detach() * mine)
        bn = torch.nn.BatchNorm1d(2)
        bn.running_mean.fill_(float(rank + 3))
        distributed.broadcast_buffers(bn)
        assert bn.running_mean.eq(3.0).all()
        # BatchNorm across ranks: each rank's half of a batch normalised as one process normalises the whole
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                                  torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 1))
        alone = __import__("copy").deepcopy(net)
        x = torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(1)) * 3 + 1
        xa, xr = x.clone().requires_grad_(True), x[4 * rank:4 * rank + 4].clone().requires_grad_(True)
        reference = alone(xa)  # one process: the whole batch
        reference.pow(2).mean().backward()
        with distributed.batchnorm_across_ranks(net):
            out = net(xr)
        # the two ranks' losses add up to one process's loss (each half's mean, halved)
        (out.pow(2).mean() / 2).backward()
        assert torch.allclose(out, reference[4 * rank:4 * rank + 4].detach(), atol=1e-5), "outputs"
        assert torch.allclose(xr.grad, xa.grad[4 * rank:4 * rank + 4], atol=1e-6), "input gradients"
        bn_alone, bn_ranks = alone[1], net[1]
        assert torch.allclose(bn_ranks.running_mean, bn_alone.running_mean, atol=1e-6)
        assert torch.allclose(bn_ranks.running_var, bn_alone.running_var, atol=1e-5)
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        summed = grads.clone()
        dist.all_reduce(summed)  # with losses that add up to one process's, the gradients add up to its gradient
        assert torch.allclose(summed, torch.cat([p.grad.flatten() for p in alone.parameters()]) , atol=1e-5)
        assert "forward" not in vars(net[1]), "the class's own forward is back after the block"
        dist.barrier()
    finally:
        distributed.shutdown()
    # as the robustad command ends a torchrun rank: an interpreter teardown here aborts now and then
    distributed.end_process(0)


def test_collective_helpers_on_two_gloo_processes(tmp_path):
    mp.spawn(_helpers_on_two_ranks, args=(str(tmp_path / "rendezvous"),), nprocs=2, join=True)


def test_a_single_process_ends_as_usual():
    with pytest.raises(SystemExit) as ended:
        distributed.end_process(3)
    assert ended.value.code == 3


# small enough for CI, large enough that the AUROC means something (digit 3 against the rest)
TRAIN = ["train", "--data", "digits", "--normal-class", "3", "--method", "cobra", "--quiet",
         "--set", "model.width=8", "--set", "model.projection_dim=16", "--set", "train.epochs=3",
         "--set", "train.steps_per_epoch=5", "--set", "train.batch_size=32", "--set", "adversarial.steps=2"]


def _run(args: list[str], torchrun: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if torchrun:
        command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "robustad", *args]
    else:
        command = [sys.executable, "-m", "robustad", *args]
        env.pop("WORLD_SIZE", None)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _auroc(folder: Path) -> float:
    split = load_split("digits", normal_classes=[3])
    return roc_auc_score(split.test_labels.numpy(), load_detector(folder).decision_function(split.test))


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")
def test_torchrun_trains_one_detector_that_matches_a_single_process(tmp_path):
    two, one, paused = tmp_path / "two", tmp_path / "one", tmp_path / "paused"
    result = _run([*TRAIN, "--out", str(two)], torchrun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("trained on 2 processes (gloo)") == 1  # rank 0 alone speaks
    assert sorted(p.name for p in two.iterdir()) == ["detector.json", "detector.safetensors", "train_state.safetensors"]
    info = json.loads((two / "detector.json").read_text())["fit_info"]
    assert info["distributed"]["world_size"] == 2 and info["distributed"]["backend"] == "gloo"
    assert _run([*TRAIN, "--out", str(one)], torchrun=False).returncode == 0
    assert "distributed" not in json.loads((one / "detector.json").read_text())["fit_info"]
    single, shared = _auroc(one), _auroc(two)
    assert single > 0.8 and abs(single - shared) <= 0.05, (single, shared)
    # paused after one epoch and resumed: the same weights, byte for byte, as the run never stopped
    first = _run([*TRAIN, "--out", str(paused), "--time-limit", "0.0001"], torchrun=True)
    assert first.returncode != 0 and first.stderr.count("paused: training stopped after epoch 1 of 3") == 1
    second = _run([*TRAIN, "--out", str(paused)], torchrun=True)
    assert second.returncode == 0 and "resuming from" in second.stderr, second.stderr[-3000:]
    assert (paused / "detector.safetensors").read_bytes() == (two / "detector.safetensors").read_bytes()
