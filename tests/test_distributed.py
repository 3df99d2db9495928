"""Multi-process CTRL fine-tuning on torch.distributed equals one process running the combined
batch with the same noise (issue 13, item 6; :mod:`ctrl_teach.ctrl.distributed`).

Two processes on the CPU (gloo backend, one thread each) fine-tune the 2-D toy for a few
iterations; each rank draws its own ``batch_size // 2`` labels and trajectories from
``rank_generator(seed, rank)``. One process then runs ``finetune(..., simulate_world_size=2)``:
the same two shards, drawn from the same two generators, back-propagated in turn and averaged.
The parameters after 5 Adam steps and the history rank 0 reports must agree within 1e-6 (the
sums are taken in the same order, so in practice they agree to the last bit).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict

import pytest
import torch

from ctrl_teach.ctrl import HeadAugmentedModel, ProbitClassifier, finetune
from ctrl_teach.ctrl.distributed import rank_generator, rank_seed, shard_size, world_info
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import load_pretrained
from ctrl_teach.profiles import seeded_init

WORLD_SIZE = 2
MODES = ("full", "random")          # "random": each rank also draws its own detach pattern
FINETUNE = dict(iterations=5, batch_size=64, lr=3e-3, warmup=0, seed=7)
HISTORY = ("J", "log_reward", "kl", "kl_init", "grad_norm")


def _problem():
    """The shipped 2-D toy (2 conditions), a 10-step DDPM-type sampler, the probit reward and a
    control head with a learned initial tilt (so every kind of trainable parameter is there)."""
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=10, eta=1.0)
    with seeded_init(0):
        aug = HeadAugmentedModel(pre.network, sampler, num_labels=2, learn_initial=True)
    return aug, ProbitClassifier([1.0, 0.0], 0.0, 1.0)


def _run(mode, **kwargs):
    aug, reward = _problem()
    hist = finetune(aug, reward, gradient=mode, **FINETUNE, **kwargs)
    return [p.detach().clone() for p in aug.trainable_parameters()], asdict(hist)


def _worker(rank, port, out_dir):
    """One rank of the 2-process run: fine-tune in every mode, save parameters and history."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if sys.platform == "linux":   # gloo on the loopback device, whatever the hostname resolves to
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        assert world_info() == (rank, WORLD_SIZE)
        results = {mode: _run(mode) for mode in MODES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """``{rank: {mode: (parameters, history)}}`` of a 2-process gloo run."""
    import torch.multiprocessing as mp

    out_dir = str(tmp_path_factory.mktemp("ddp"))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")   # inherited by the children
    try:
        mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD_SIZE, join=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {r: torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD_SIZE)}


@pytest.fixture(scope="module")
def one_process():
    """``{mode: (parameters, history)}`` of one process running the combined batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # the same kernels as the one-thread ranks
    try:
        return {mode: _run(mode, simulate_world_size=WORLD_SIZE) for mode in MODES}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_equal_one_process_with_the_combined_batch(two_processes, one_process,
                                                                  mode):
    ref, _ = one_process[mode]
    for rank in range(WORLD_SIZE):
        params, _ = two_processes[rank][mode]
        diff = max(float((p - q).abs().max()) for p, q in zip(params, ref, strict=True))
        print(f"{mode}, rank {rank}: max |theta_2proc - theta_1proc| = {diff:.2e}")
        assert diff < 1e-6
    start = [p.detach() for p in _problem()[0].trainable_parameters()]
    moved = max(float((p - q).abs().max()) for p, q in zip(ref, start, strict=True))
    assert moved > 1e-3          # 5 Adam steps at lr 3e-3 did move the parameters


@pytest.mark.parametrize("mode", MODES)
def test_rank0_history_is_the_combined_batch_history(two_processes, one_process, mode):
    _, ref = one_process[mode]
    for rank in range(WORLD_SIZE):   # every rank holds the global (rank-averaged) history
        _, hist = two_processes[rank][mode]
        for name in HISTORY:
            assert len(hist[name]) == FINETUNE["iterations"]
            assert max(abs(a - b) for a, b in zip(hist[name], ref[name], strict=True)) < 1e-6, \
                (rank, name)
        steps = torch.tensor(hist["kl_per_step"]) - torch.tensor(ref["kl_per_step"])
        assert float(steps.abs().max()) < 1e-6
    assert ref["kl"][0] == 0.0 and ref["kl_init"][0] == 0.0   # identical to pre-trained at init


def test_the_ranks_draw_different_noise():
    """Each rank's shard is its own: rank generators give different streams, rank 0's is the
    single-process one, and (seed, rank) pairs do not collide."""
    draws = [torch.randn(4, generator=rank_generator(7, r)) for r in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(draws[0], torch.randn(4, generator=torch.Generator().manual_seed(7)))
    assert rank_seed(7, 0) == 7 and rank_seed(1, 0) != rank_seed(0, 1)


def test_one_simulated_rank_is_the_single_process_loop():
    aug, reward = _problem()
    plain = finetune(aug, reward, iterations=2, batch_size=16, seed=3)
    aug1, _ = _problem()
    one = finetune(aug1, reward, iterations=2, batch_size=16, seed=3, simulate_world_size=1)
    assert plain.J == one.J
    assert all(torch.equal(p, q) for p, q in zip(aug.trainable_parameters(),
                                                 aug1.trainable_parameters(), strict=True))


def test_batch_must_split_evenly_over_the_ranks():
    aug, reward = _problem()
    with pytest.raises(ValueError, match="batch_size"):
        finetune(aug, reward, iterations=1, batch_size=63, simulate_world_size=2)
    with pytest.raises(ValueError, match="simulate_world_size"):
        finetune(aug, reward, iterations=1, batch_size=64, simulate_world_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        shard_size(10, 3)
    assert shard_size(64, 2) == 32 and world_info() == (0, 1)
