"""Experiments (d) and (e): sampling cost and fine-tuning cost (Chapter 8).

(d) **Sampling cost**, all methods measured in one run on the same machine: network
evaluations per sample (forward passes of the pre-trained-size eps-network; ``backward``
counts those that were differentiated, as DPS does), wall time per 1000 samples, and both as
ratios to CTRL. CTRL's small control head and the classifiers are not counted as network
evaluations (their time is in the wall time). Rejection costs ``K / acceptance`` evaluations.

(e) **Fine-tuning cost** of one CTRL iteration (a rollout of ``K`` steps and its backward
pass) versus ``K`` and the gradient mode (``full``, ``checkpoint``, ``truncated``). Memory:
on CUDA ``torch.cuda.max_memory_allocated`` above the memory in use before the iteration;
on CPU the peak bytes of the live tensors autograd has saved for the backward pass, counted
with ``torch.autograd.graph.saved_tensors_hooks`` (``memory_method = "autograd_saved_bytes"``,
see :func:`saved_tensor_bytes`): an estimate of activation memory. Under ``checkpoint`` the
per-step activations are not saved (only recomputed, one step at a time, during backward),
so that estimate leaves out the one-step recomputation peak.
"""

from __future__ import annotations

import dataclasses
import time
import weakref

import torch
from torch import nn

from ..baselines import LabelConditionedDenoiser, rejection_baseline
from ..ctrl import HeadAugmentedModel, rollout
from ..diffusion import DiffusionSampler, model_device
from ..profiles import seeded_init
from .methods import FittedMethods, method_samplers

__all__ = ["CountingNetwork", "run_sampling_cost", "run_finetune_cost", "saved_tensor_bytes"]


class CountingNetwork(nn.Module):
    """Wraps an eps-network and counts per-sample forward passes (and differentiated ones).

    Args:
        network: the eps-network ``network(x, t, c, **kw)`` to count (called, not copied).

    Attributes:
        forward_count: rows evaluated since the last :meth:`reset`.
        backward_count: rows evaluated with an input that requires grad (differentiated).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.data_shape, self.num_conditions = network.data_shape, network.num_conditions
        if hasattr(network, "emb_dim"):
            self.emb_dim = network.emb_dim
        self.forward_count = 0
        self.backward_count = 0

    def reset(self):
        """Set both counts to zero."""
        self.forward_count = self.backward_count = 0

    def forward(self, x, t, c=None, **kwargs):
        self.forward_count += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.backward_count += x.shape[0]
        return self.network(x, t, c, **kwargs)


def _counting_cfg_model(model: LabelConditionedDenoiser, seed: int) -> LabelConditionedDenoiser:
    """A new label-conditioned denoiser whose network is a :class:`CountingNetwork` around
    (a copy of) ``model``'s trained network, with ``model``'s label embedding loaded."""
    with seeded_init(seed):      # the embedding's random init is overwritten below
        counted = LabelConditionedDenoiser(CountingNetwork(model.network), model.num_labels)
    counted.label.load_state_dict(model.label.state_dict())
    return counted.eval().requires_grad_(False)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_sampling_cost(problem, fitted: FittedMethods, n: int, *, c, y: int,
                      cfg_w: float = 1.0, seed: int = 0, progress: bool = True) -> dict:
    """Measure (d) for every method in ``fitted`` plus ``pretrained`` and ``rejection``.

    The pre-trained network is wrapped in a :class:`CountingNetwork` and handed to the
    methods through :func:`~.methods.method_samplers` (``network=``); CFG samples from a new
    denoiser around a counting copy of its own network. ``fitted`` is left untouched.

    Args:
        problem: the :class:`~.problems.Problem`.
        fitted: the :class:`~.methods.FittedMethods` to time.
        n: samples per method.
        c: the int condition (or ``None``: uniform blocks).
        y: the int label.
        cfg_w: CFG is timed at this guidance weight (``w > 0`` needs two evaluations per
            step; ``w = 0`` costs the same as the pre-trained model).
        seed: seeds each method's noise.
        progress: print one line per method.

    Returns:
        ``{"problem", "n", "num_steps", "device", "rows"}`` (benchmarks/SCHEMA.md).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    device = model_device(problem.network)
    counter = CountingNetwork(problem.network)
    counted = fitted
    if fitted.cfg_model is not None:  # count the CFG network's own evaluations
        counted = dataclasses.replace(fitted,
                                      cfg_model=_counting_cfg_model(fitted.cfg_model, seed))
    samplers = method_samplers(problem, counted, cfg_w=cfg_w, network=counter)
    rows = []
    for name, fn in samplers.items():
        if name == "rejection":
            continue
        fn(4, c=c, y=y, generator=torch.Generator().manual_seed(seed))   # warm-up
        counts = counted.cfg_model.network if name == "cfg" else counter
        counts.reset()
        _sync(device)
        start = time.perf_counter()
        fn(n, c=c, y=y, generator=torch.Generator().manual_seed(seed))
        _sync(device)
        secs = time.perf_counter() - start
        rows.append(dict(method=name, nfe_per_sample=counts.forward_count / n,
                         backward_per_sample=counts.backward_count / n,
                         seconds_per_1000=1000 * secs / n))
    if fitted.classifier is not None:
        start = time.perf_counter()
        res = rejection_baseline(problem.network, problem.sampler, fitted.classifier, n,
                                 c=c, y=y, generator=torch.Generator().manual_seed(seed),
                                 batch=max(256, n))
        _sync(device)
        secs = time.perf_counter() - start
        rows.append(dict(method="rejection", nfe_per_sample=res.nfe_per_sample,
                         backward_per_sample=0.0, seconds_per_1000=1000 * secs / n,
                         acceptance=res.acceptance))
    ref = next((r for r in rows if r["method"] == "ctrl"), None)
    for r in rows:
        r["cfg_w"] = cfg_w if r["method"] == "cfg" else None
        r["nfe_ratio_to_ctrl"] = r["nfe_per_sample"] / ref["nfe_per_sample"] if ref else None
        r["time_ratio_to_ctrl"] = (r["seconds_per_1000"] / ref["seconds_per_1000"]
                                   if ref else None)
        if progress:
            print(f"  [{problem.name}] {r['method']:10} NFE {r['nfe_per_sample']:7.1f} "
                  f"(+{r['backward_per_sample']:.0f} bwd) {r['seconds_per_1000']:8.2f} s/1000",
                  flush=True)
    return dict(problem=problem.name, n=int(n), num_steps=problem.sampler.num_steps,
                device=str(device), rows=rows)


def saved_tensor_bytes(fn):
    """Run ``fn()`` and measure the peak bytes of the live tensors saved for backward.

    Every tensor autograd saves is counted (once per storage) from the moment it is saved
    until the Python tensor holding it is freed (e.g. when a truncated part of the graph is
    dropped); the peak of that running total is returned. The graph that is still alive
    when ``fn`` returns is part of the peak.

    Args:
        fn: a function of no arguments (e.g. a rollout returning a loss).

    Returns:
        ``(fn(), peak bytes)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    live: dict = {}
    state = {"current": 0, "peak": 0}

    def release(ptr):
        entry = live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            state["current"] -= entry[0]
            del live[ptr]

    def pack(t):
        t = t.detach()   # same storage; saving ``t`` itself would make a reference cycle
        try:
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):
            ptr, nbytes = id(t), t.numel() * t.element_size()
        if ptr in live:
            live[ptr][1] += 1
        else:
            live[ptr] = [nbytes, 1]
            state["current"] += nbytes
            state["peak"] = max(state["peak"], state["current"])
        weakref.finalize(t, release, ptr)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, state["peak"]


def run_finetune_cost(problem, reward, steps_list, modes, truncate_steps: int = 5,
                      batch: int = 64, repeats: int = 2, seed: int = 0,
                      progress: bool = True) -> dict:
    """Measure (e): seconds and peak memory of one CTRL iteration per (``K``, mode).

    Each configuration runs ``repeats + 1`` iterations and reports the median of the last
    ``repeats`` (the first is a warm-up).

    Args:
        problem: the :class:`~.problems.Problem` (network, schedule, ``ctrl_width``).
        reward: any reward module (its accuracy is irrelevant to the cost).
        steps_list: the numbers of sampler steps ``K`` to measure.
        modes: gradient modes of :func:`~ctrl_teach.ctrl.rollout` (``"full"``,
            ``"checkpoint"``, ``"truncated"``).
        truncate_steps: differentiated final steps in ``"truncated"`` mode.
        batch: trajectories per iteration.
        repeats: timed iterations per configuration (after one warm-up).
        seed: seeds the head (under ``seeded_init``), the labels and the noise.
        progress: print one line per configuration.

    Returns:
        ``{"problem", "device", "memory_method", "rows"}`` (benchmarks/SCHEMA.md).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    device = model_device(problem.network)
    cuda = device.type == "cuda"
    memory_method = "cuda_max_memory_allocated" if cuda else "autograd_saved_bytes"
    rows = []
    for K in steps_list:
        sampler = DiffusionSampler(problem.schedule, num_steps=int(K), eta=1.0,
                                   clip_x0=problem.clip_x0)
        for mode in modes:
            with seeded_init(seed):
                aug = HeadAugmentedModel(problem.network, sampler, problem.num_labels,
                                         width=problem.settings["ctrl_width"])
            aug = aug.to(device)
            gen = torch.Generator().manual_seed(seed)
            times, mems = [], []
            for _ in range(repeats + 1):
                c = problem.condition_tensor(None, batch).to(device)
                y = torch.randint(problem.num_labels, (batch,), generator=gen).to(device)

                def step(aug=aug, c=c, y=y, gen=gen, mode=mode, k=int(K)):
                    out = rollout(aug, reward, c=c, y=y, generator=gen, gradient=mode,
                                  truncate_steps=min(int(truncate_steps), k))
                    return -out.J.mean()

                if cuda:
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                if cuda:
                    loss = step()
                    loss.backward()
                    torch.cuda.synchronize()
                    mem = torch.cuda.max_memory_allocated() - base
                else:
                    loss, mem = saved_tensor_bytes(step)
                    loss.backward()
                times.append(time.perf_counter() - start)
                mems.append(mem)
                aug.zero_grad(set_to_none=True)
            t = sorted(times[1:])[len(times[1:]) // 2]
            rows.append(dict(num_steps=int(K), mode=mode,
                             truncate_steps=min(int(truncate_steps), int(K))
                             if mode == "truncated" else None,
                             batch=int(batch), seconds_per_iteration=t,
                             peak_memory_bytes=int(max(mems[1:]))))
            if progress:
                r = rows[-1]
                print(f"  [{problem.name}] K={K:<3} {mode:10} {t:7.3f} s/it "
                      f"{r['peak_memory_bytes'] / 2**20:8.2f} MiB", flush=True)
    full = {r["num_steps"]: r for r in rows if r["mode"] == "full"}
    for r in rows:
        f = full.get(r["num_steps"])
        r["time_ratio_to_full"] = r["seconds_per_iteration"] / f["seconds_per_iteration"] \
            if f else None
        r["memory_ratio_to_full"] = (r["peak_memory_bytes"] / f["peak_memory_bytes"]
                                     if f and f["peak_memory_bytes"] else None)
    return dict(problem=problem.name, device=str(device), memory_method=memory_method,
                rows=rows)
