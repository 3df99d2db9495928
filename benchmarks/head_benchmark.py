"""The flat head's input, measured: raw ``x`` against random Fourier features, on the 2-D toys.

For the ring (c = 0) and the grid (c = 1) of ``load_toy("gmm")`` with their exact denoiser (as
in ``class_floor_benchmark.py``), the probit reward p(y = 1 | x) = Phi(x_1), alpha = gamma = 1
and a K-step DDPM-type sampler (eta = 1, x0_hat clipped to [-3, 3]), it fine-tunes a head for
each policy class (mean-only, variance-aware), each input (``plain``: ``fourier_features=0``,
the head before issue 11; ``fourier``: the default 64 random Fourier features) and each seed
(400 iterations of batch 128 at lr 3e-3, the toy tests' budget), and prints every label's
certificate gap of ``evaluate_against_target`` with its standard error and the seconds per
iteration. The evaluation draws use fixed generators, so the two heads are scored on the same
noise. Compare with the class floors of ``class_floor_benchmark.py``.

Usage: python benchmarks/head_benchmark.py [--steps 20] [--seeds 0 1]
       [--out _build/benchmarks/head.json]
JSON: {"threads", "rows": [{K, policy, head, seed, seconds_per_iteration,
pairs: [{toy, c, y, gap, gap_se}]}]}.
"""

from __future__ import annotations

import argparse
import json

import torch
from class_floor_benchmark import exact_toy_problem  # benchmarks/ is on sys.path when run

from ctrl_teach.ctrl import HeadAugmentedModel, evaluate_against_target, finetune
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import atomic_write_bytes
from ctrl_teach.profiles import seeded_init

HEADS = {"plain": dict(fourier_features=0), "fourier": {}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", default="_build/benchmarks/head.json")
    args = parser.parse_args(argv)
    toy, schedule, network, reward = exact_toy_problem()
    out = dict(threads=torch.get_num_threads(), iterations=args.iterations, rows=[])
    names = [f"{n} y{y}" for n in toy.condition_names for y in (0, 1)]
    print(f"{'K':>3s} {'policy':9s} {'head':8s} {'seed':>4s} {'s/it':>6s} "
          + " ".join(f"{n:>15s}" for n in names))
    for K in args.steps:
        sampler = DiffusionSampler(schedule, num_steps=K, eta=1.0, clip_x0=3.0)
        for variance, policy in ((False, "mean-only"), (True, "variance")):
            for head, kwargs in HEADS.items():
                for seed in args.seeds:
                    with seeded_init(seed):
                        aug = HeadAugmentedModel(network, sampler, 2, variance=variance,
                                                 **kwargs)
                    wall = finetune(aug, reward, iterations=args.iterations, batch_size=128,
                                    lr=3e-3, seed=seed).wall_time
                    pairs = []
                    for c, name in enumerate(toy.condition_names):
                        for y in (0, 1):
                            r = evaluate_against_target(
                                aug, reward, c=c, y=y,
                                generator=torch.Generator().manual_seed(10 + 2 * c + y))
                            pairs.append(dict(toy=name, c=c, y=y, gap=r["gap"],
                                              gap_se=r["gap_se"]))
                    per_it = wall / args.iterations
                    print(f"{K:3d} {policy:9s} {head:8s} {seed:4d} {per_it:6.3f} "
                          + " ".join(f"{p['gap']:7.4f}±{p['gap_se']:.4f}" for p in pairs),
                          flush=True)
                    out["rows"].append(dict(K=K, policy=policy, head=head, seed=seed,
                                            seconds_per_iteration=per_it, pairs=pairs))
                    atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
