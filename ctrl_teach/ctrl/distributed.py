"""Multi-process CTRL fine-tuning on ``torch.distributed`` (data parallel over trajectories).

:func:`~ctrl_teach.ctrl.finetune` needs no change to run under
``torchrun --nproc_per_node=N script.py``: when a default process group is initialised, each of
the ``N`` ranks

* draws its own ``batch_size // N`` labels and trajectories (``draw_labels`` and the chain's
  noise) from its own generator, seeded from ``(seed, rank)`` by :func:`rank_seed`;
* back-propagates the mean ``J`` of its shard, then all-reduces (averages) the gradients of
  ``augmented.trainable_parameters()`` (:func:`average_gradients`), so every rank holds the
  gradient of the combined batch of ``batch_size`` trajectories and clips that global gradient;
* takes the same Adam step, so the parameters stay identical on every rank (they are
  broadcast from rank 0 once, at the start, as DDP does);
* records the history averaged over ranks (:func:`average_values`), so rank 0 reports the
  global J, log reward and KL; only rank 0 shows the progress bar.

Why an explicit all-reduce rather than ``DistributedDataParallel``: DDP wraps one module and
expects one ``forward`` per ``backward``, but the fine-tuning loop calls
``augmented.step`` ``K`` times per trajectory batch (once per sampler step, possibly
re-computed under gradient checkpointing), and never calls ``augmented.forward`` at all. The
trainable parameters are also spread over a module that holds the frozen network (a control
head, LoRA factors inside the network, an initial tilt), and the ``"truncated"`` and
``"random"`` gradient modes leave some of them without a gradient in some iterations, which
DDP only tolerates with ``find_unused_parameters``. Averaging the gradients once after the
backward pass is exactly what DDP computes (the mean of the per-rank gradients of equal shard
sizes), works for every augmented model and gradient mode, and costs one all-reduce of the
(small) trainable parameters per iteration; what it gives up is DDP's overlap of that
communication with the backward pass, which matters little next to a ``K``-step rollout.

:func:`~ctrl_teach.ctrl.finetune`'s ``simulate_world_size=N`` runs in one process what ``N``
ranks compute together: the same ``N`` generators, shards and averaged gradient (the shards
are back-propagated one after the other), which is how the tests check that a 2-process run
equals the single-process run of the combined batch with the same noise.

Introduced in: Chapter 5 (CTRL on 2-D data); the README's "Several GPUs" section runs it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._checks import check_nonnegative_int, check_positive_int

__all__ = ["world_info", "rank_seed", "rank_generator", "shard_size", "init_distributed",
           "broadcast_parameters", "average_gradients", "average_values", "agree"]


def _dist():
    """``torch.distributed`` if it is available and a default process group is initialised."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one.

    Returns:
        The rank of this process and the number of processes.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s generator in a run seeded with ``seed``.

    Rank 0 keeps ``seed`` itself, so a one-process run is today's run; rank ``r > 0`` gets
    the first 63-bit word of ``numpy.random.SeedSequence(seed, spawn_key=(r,))`` (the
    ``r``-th child of ``seed``: statistically independent streams, and no collision between
    ``(seed, rank)`` pairs such as ``(1, 0)`` and ``(0, 1)``).

    Args:
        seed: the run's seed (a non-negative int).
        rank: the process rank (a non-negative int).

    Returns:
        A seed for ``torch.Generator.manual_seed``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    seed = check_nonnegative_int("seed", seed)
    rank = check_nonnegative_int("rank", rank)
    if rank == 0:
        return seed
    state = np.random.SeedSequence(seed, spawn_key=(rank,)).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def rank_generator(seed: int, rank: int) -> torch.Generator:
    """A CPU generator seeded with :func:`rank_seed` ``(seed, rank)``.

    Args:
        seed: the run's seed.
        rank: the process rank.

    Returns:
        A ``torch.Generator`` (CPU: the noise is drawn on the CPU and moved, so the streams are
        the same on every device).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    return torch.Generator().manual_seed(rank_seed(seed, rank))


def shard_size(batch_size: int, world_size: int) -> int:
    """Trajectories per rank: ``batch_size // world_size``.

    Args:
        batch_size: the global batch (all ranks together).
        world_size: the number of ranks.

    Returns:
        The per-rank batch size.

    Raises:
        ValueError: if ``batch_size`` is not a multiple of ``world_size`` (unequal shards would
            weight the ranks' gradients unequally).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    batch_size = check_positive_int("batch_size", batch_size)
    world_size = check_positive_int("world_size", world_size)
    if batch_size % world_size:
        raise ValueError(f"batch_size must be a multiple of the world size {world_size} (each "
                         f"rank draws batch_size // world_size trajectories), got {batch_size}")
    return batch_size // world_size


def init_distributed(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Initialise the default process group from ``torchrun``'s environment variables.

    With ``nccl`` (the default when CUDA is available) each process uses the GPU
    ``LOCAL_RANK``; with ``gloo`` the CPU. Without ``torchrun`` (no ``WORLD_SIZE`` in the
    environment) nothing is initialised and the process is rank 0 of 1.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (``nccl`` if CUDA is available, else
            ``gloo``).

    Returns:
        ``(rank, world_size, device)``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    import torch.distributed as dist

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA; use backend='gloo' on CPUs")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend)
    rank, world_size = world_info()
    return rank, world_size, device


def broadcast_parameters(params, src: int = 0) -> None:
    """Copy rank ``src``'s values of ``params`` to every rank (what DDP does at construction).

    Args:
        params: a list of tensors (the trainable parameters).
        src: the source rank.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    dist = _dist()
    if dist is None:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src)


def _buckets(params):
    """Parameters grouped by ``(device, dtype)``: one flat all-reduce per group."""
    groups: dict = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    return list(groups.values())


def average_gradients(params, world_size: int | None = None) -> None:
    """Replace each ``p.grad`` by its mean over the ranks (in place).

    One flat all-reduce (sum) per ``(device, dtype)`` group, then a division by the world size:
    the gradient of the mean objective of the combined batch when every rank's shard has the
    same size. A gradient missing on some ranks (a parameter that did not reach the loss there)
    counts as zero; one missing on every rank stays ``None``, as in a single process.

    Args:
        params: the trainable parameters.
        world_size: the number of ranks (default: the process group's).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    dist = _dist()
    if dist is None:
        return
    world_size = world_size or dist.get_world_size()
    for group in _buckets(params):
        flags = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype,
                             device=group[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in group] + [flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat[:-len(group)].div_(world_size)
        offset = 0
        for p, present in zip(group, flat[-len(group):].tolist(), strict=True):
            n = p.numel()
            if present:
                p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n


def average_values(values: torch.Tensor, world_size: int | None = None) -> torch.Tensor:
    """The mean of ``values`` over the ranks (a new tensor; ``values`` itself without a group).

    Args:
        values: a tensor of per-rank values (on the device of the backend: CUDA for nccl).
        world_size: the number of ranks (default: the process group's).

    Returns:
        The element-wise mean over ranks.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    dist = _dist()
    if dist is None:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / (world_size or dist.get_world_size())


def agree(flag: bool, device=None) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. a callback's early stop, so no rank waits alone).

    Args:
        flag: this rank's decision.
        device: where the one-element tensor lives (CUDA for nccl).

    Returns:
        Rank 0's decision.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    dist = _dist()
    if dist is None:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())
