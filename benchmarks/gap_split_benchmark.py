"""Where a fine-tuned policy's certificate gap sits, step by step, on the 2-D toys.

For the ring (c = 0) and the grid (c = 1) of ``load_toy("gmm")`` with their exact denoiser (as
in ``class_floor_benchmark.py``), the probit reward p(y = 1 | x) = Phi(x_1), alpha = gamma = 1
and a K-step DDPM-type sampler (eta = 1, x0_hat clipped to [-3, 3]), it fine-tunes a head
(mean-only and variance-aware; 400 iterations of batch 128 at lr 3e-3, the toy tests' budget)
and prints for each label the certificate gap of ``evaluate_against_target`` beside its split
by :func:`ctrl_teach.ctrl.policy_step_gaps` into the initial law and the noisy steps (grouped
in thirds: early, middle and late steps). Compare the total with the class's floor
(``class_floor_benchmark.py``): what the policy pays above it, and in which steps, is
optimisation or the head's function class.

Usage: python benchmarks/gap_split_benchmark.py [--profile quick|full] [--steps 20]
       [--toys ring grid] [--out _build/benchmarks/gap_split.json]
JSON: {"profile", "threads", "settings", "rows": [{toy, c, y, K, policy, gap, gap_se, total,
total_se, initial, thirds, per_step, seconds (evaluation), train_seconds (fine-tuning)}]}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from class_floor_benchmark import exact_toy_problem  # benchmarks/ is on sys.path when run

from ctrl_teach.ctrl import HeadAugmentedModel, evaluate_against_target, finetune, policy_step_gaps
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import atomic_write_bytes
from ctrl_teach.profiles import seeded_init

SETTINGS = {"quick": dict(num_states=8, num_rollouts=64),
            "full": dict(num_states=32, num_rollouts=256)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("CTRL_TEACH_PROFILE", "quick"),
                        choices=tuple(SETTINGS))
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--toys", nargs="+", default=["ring", "grid"], choices=("ring", "grid"))
    parser.add_argument("--out", default="_build/benchmarks/gap_split.json")
    args = parser.parse_args(argv)
    toy, schedule, network, reward = exact_toy_problem()
    settings = SETTINGS[args.profile]
    out = dict(profile=args.profile, threads=torch.get_num_threads(), settings=settings,
               rows=[])
    print(f"{'toy':5s} {'K':>3s} {'policy':9s} {'y':>2s} {'certificate':>15s} "
          f"{'split':>15s} {'early':>7s} {'middle':>7s} {'late':>7s} {'eval s':>6s}")
    for K in args.steps:
        sampler = DiffusionSampler(schedule, num_steps=K, eta=1.0, clip_x0=3.0)
        for variance, policy in ((False, "mean-only"), (True, "variance")):
            with seeded_init(0):
                aug = HeadAugmentedModel(network, sampler, 2, variance=variance)
            train_seconds = finetune(aug, reward, iterations=400, batch_size=128, lr=3e-3,
                                     seed=0).wall_time
            for c, name in enumerate(toy.condition_names):
                if name not in args.toys:
                    continue
                for y in (0, 1):
                    start = time.perf_counter()
                    r = evaluate_against_target(aug, reward, c=c, y=y, generator=torch.Generator()
                                                .manual_seed(10 + 2 * c + y))
                    s = policy_step_gaps(aug, reward, c=c, y=y, generator=torch.Generator()
                                         .manual_seed(20 + 2 * c + y), **settings)
                    gaps = [row["gap"] for row in s.per_step]
                    third = max(1, len(gaps) // 3)
                    thirds = [sum(gaps[:third]), sum(gaps[third:-third]), sum(gaps[-third:])]
                    seconds = time.perf_counter() - start
                    print(f"{name:5s} {K:3d} {policy:9s} {y:2d} {r['gap']:8.4f} ± "
                          f"{r['gap_se']:.4f} {s.total:8.4f} ± {s.se:.4f}"
                          + "".join(f" {v:7.4f}" for v in thirds) + f" {seconds:6.0f}",
                          flush=True)
                    out["rows"].append(dict(toy=name, c=c, y=y, K=K, policy=policy,
                                            gap=r["gap"], gap_se=r["gap_se"], total=s.total,
                                            total_se=s.se, initial=s.initial, thirds=thirds,
                                            per_step=s.per_step, seconds=seconds,
                                            train_seconds=train_seconds))
                    atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
