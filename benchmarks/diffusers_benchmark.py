"""CTRL through the diffusers bridge: gradient modes and the cost of sampling after a merge.

On the shipped diffusers model (``ctrl_teach/pretrained/diffusers/tiny-digits``, loaded with
``UNet2DModel.from_pretrained``; DDPM on a ``K``-step "trailing" grid without x0 clipping, so
that every gradient mode applies) with a known reward, ``p(y = 1 | x) = Phi((mean pixel +
0.45) / 0.1)`` ("much ink"), CTRL with :class:`~ctrl_teach.diffusers_bridge.DiffusersLoRAModel`
is run for a fixed budget under each ``gradient`` mode of :func:`~ctrl_teach.ctrl.rollout`:

* ``full``, ``checkpoint`` (the same gradient, steps recomputed), ``truncated`` (the last
  ``truncate_steps`` steps differentiated) and ``random`` (the official code's randomised
  per-step detaching);
* per mode: seconds per iteration, peak memory per iteration (CUDA: ``max_memory_allocated``;
  CPU: bytes autograd saved for the backward pass, :func:`~ctrl_teach.experiments.cost.
  saved_tensor_bytes`), and after the budget, per evaluated ``(c, y)``, the certificate gap
  ``alpha log Z - J`` (Chapter 4; ``log Z`` from pre-trained samples) and the energy distance
  to rejection samples of the exact target (:func:`~ctrl_teach.ctrl.evaluate_against_target`).

Then the sampling time of the fine-tuned (``full``) model relative to the pre-trained
sampler: merged LoRA (peft ``merge_and_unload``, one UNet call per step; goal <= 1.05),
unmerged LoRA (one call per step through the LoRA layers), and ``ctrl.sample`` (which also
evaluates the pre-trained UNet to report the control), and the largest difference between
merged and unmerged samples.

Usage: python benchmarks/diffusers_benchmark.py [--size quick|full] [--out FILE]
JSON: {"size", "device", "threads", "config", "gradient_modes": [...], "sampling": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from ctrl_teach.ctrl import evaluate_against_target, finetune, rollout, sample
from ctrl_teach.diffusers_bridge import DiffusersLoRAModel, from_diffusers, sample_adapted
from ctrl_teach.diffusers_bridge.tiny_model import load_tiny_unet
from ctrl_teach.experiments.cost import saved_tensor_bytes

SIZES = {
    "quick": dict(num_steps=10, iterations=10, batch_size=8, truncate_steps=3, rank=4,
                  pairs=[(1, 1), (0, 0)], num_candidates=300, num_samples=100,
                  sample_n=64, sample_repeats=3),
    "full": dict(num_steps=25, iterations=200, batch_size=64, truncate_steps=5, rank=8,
                 pairs=[(c, y) for c in range(10) for y in (0, 1)], num_candidates=4000,
                 num_samples=500, sample_n=512, sample_repeats=5),
}
MODES = ("full", "checkpoint", "truncated", "random")


class InkProbit(torch.nn.Module):
    """Known reward ``p(y = 1 | x) = Phi((mean pixel - m) / s)``; ``c`` ignored."""

    num_labels = 2
    data_shape = (1, 8, 8)

    def __init__(self, m: float = -0.45, s: float = 0.1):
        super().__init__()
        self.m, self.s = m, s

    def forward(self, x, c=None):
        z = (x.flatten(1).mean(1) - self.m) / self.s
        return torch.stack([torch.special.log_ndtr(-z), torch.special.log_ndtr(z)], dim=1)


def _iteration_memory(aug, reward, cfg, mode, device):
    """Peak memory of one rollout + backward in ``mode`` (bytes)."""
    y = torch.arange(cfg["batch_size"]) % 2
    gen = torch.Generator().manual_seed(123)

    def step():
        out = rollout(aug, reward, c=torch.arange(cfg["batch_size"]) % 10, y=y, generator=gen,
                      gradient=mode, truncate_steps=cfg["truncate_steps"])
        loss = -out.J.mean()
        return loss

    aug.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step().backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        loss, peak = saved_tensor_bytes(step)
        loss.backward()
    aug.zero_grad(set_to_none=True)
    aug.eval()
    return int(peak)


def _evaluate(aug, reward, cfg):
    rows = []
    for c, y in cfg["pairs"]:
        r = evaluate_against_target(aug, reward, c=c, y=y,
                                    generator=torch.Generator().manual_seed(7),
                                    num_candidates=cfg["num_candidates"],
                                    num_samples=cfg["num_samples"])
        rows.append({k: (float(v) if isinstance(v, float) else v) for k, v in r.items()})
    mean = {k: sum(r[k] for r in rows) / len(rows)
            for k in ("gap", "ed", "ed_nothing", "confidence", "confidence_exact")}
    return mean, rows


def _time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(size: str = "quick", device=None) -> dict:
    cfg = SIZES[size]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from diffusers import DDPMScheduler

    unet, scheduler = load_tiny_unet()
    scheduler = DDPMScheduler.from_config(scheduler.config, clip_sample=False,
                                          timestep_spacing="trailing")
    pre = from_diffusers(unet.to(device), scheduler, cfg["num_steps"])
    reward = InkProbit().to(device)
    modes, models = [], {}
    for mode in MODES:
        aug = DiffusersLoRAModel(pre.network, pre.sampler, num_labels=2, rank=cfg["rank"],
                                 seed=0).to(device)
        mem = _iteration_memory(aug, reward, cfg, mode, device)
        hist = finetune(aug, reward, iterations=cfg["iterations"], batch_size=cfg["batch_size"],
                        lr=3e-3, warmup=2, gradient=mode, truncate_steps=cfg["truncate_steps"],
                        seed=0)
        mean, rows = _evaluate(aug, reward, cfg)
        modes.append(dict(mode=mode, seconds_per_iteration=hist.wall_time / cfg["iterations"],
                          peak_memory_bytes=mem, J_final=sum(hist.J[-5:]) / 5,
                          kl_final=sum(hist.kl[-5:]) / 5, **mean, pairs=rows))
        models[mode] = aug
        print(f"  {mode:10s} done ({hist.wall_time:.0f} s)", file=sys.stderr, flush=True)

    aug = models["full"]
    merged = aug.merged()
    n, reps = cfg["sample_n"], cfg["sample_repeats"]
    c = torch.arange(n) % 10

    def gen():
        return torch.Generator().manual_seed(11)

    with torch.no_grad():
        t_pre = _time(lambda: pre.sampler.sample(pre.network, n, c=c, generator=gen()), reps)
        t_merged = _time(lambda: sample_adapted(merged, n, c=c, y=1, generator=gen()), reps)
        t_unmerged = _time(lambda: sample_adapted(aug, n, c=c, y=1, generator=gen()), reps)
        t_ctrl = _time(lambda: sample(aug, n, c=c, y=1, generator=gen()), reps)
        diff = float((sample_adapted(merged, n, c=c, y=1, generator=gen())
                      - sample(aug, n, c=c, y=1, generator=gen())).abs().max())
    sampling = dict(n=n, seconds_pretrained=t_pre, ratio_merged=t_merged / t_pre,
                    ratio_unmerged=t_unmerged / t_pre, ratio_ctrl_sample=t_ctrl / t_pre,
                    max_abs_diff_merged_unmerged=diff)
    return dict(size=size, device=str(device), threads=torch.get_num_threads(),
                config={k: v for k, v in cfg.items()}, reward="InkProbit(m=-0.45, s=0.1)",
                alpha=1.0, gradient_modes=modes, sampling=sampling)


def print_table(res: dict) -> None:
    cfg = res["config"]
    print(f"diffusers bridge on tiny-digits: K = {cfg['num_steps']}, {cfg['iterations']} "
          f"iterations x {cfg['batch_size']}, LoRA rank {cfg['rank']}, device {res['device']}, "
          f"{res['threads']} thread(s)")
    print(f"{'mode':10s} {'s/iter':>7s} {'peak MiB':>9s} {'J':>7s} {'KL':>6s} {'gap':>7s} "
          f"{'ED':>7s} {'ED pre':>7s} {'conf':>5s} {'exact':>5s}")
    for r in res["gradient_modes"]:
        print(f"{r['mode']:10s} {r['seconds_per_iteration']:7.2f} "
              f"{r['peak_memory_bytes'] / 2**20:9.2f} {r['J_final']:7.3f} {r['kl_final']:6.3f} "
              f"{r['gap']:7.3f} {r['ed']:7.4f} {r['ed_nothing']:7.4f} {r['confidence']:5.2f} "
              f"{r['confidence_exact']:5.2f}")
    s = res["sampling"]
    print(f"sampling {s['n']} samples: pre-trained {s['seconds_pretrained']:.3f} s; ratio merged "
          f"{s['ratio_merged']:.3f} (goal <= 1.05), unmerged {s['ratio_unmerged']:.3f}, "
          f"ctrl.sample {s['ratio_ctrl_sample']:.3f}; max |merged - unmerged| "
          f"{s['max_abs_diff_merged_unmerged']:.1e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="quick")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="_build/benchmarks/diffusers.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = run(args.size, args.device)
    print_table(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
