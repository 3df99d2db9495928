"""The floor of each Gaussian step class on the 2-D toys, against the number of steps K.

For the ring (c = 0) and the grid (c = 1) of ``load_toy("gmm")`` with their exact denoiser
(:class:`~ctrl_teach.diffusion.ExactMixtureDenoiser`, so the pre-trained model has no training
error and rollouts are cheap), the probit reward p(y = 1 | x) = Phi(x_1) of the toy tests,
alpha = gamma = 1 and a DDPM-type sampler (eta = 1, x0_hat clipped to [-3, 3]) with K steps, it
measures with :func:`ctrl_teach.ctrl.gaussian_class_floor` the smallest certificate gap that a
mean-only, a diagonal (variance-aware) and a full-covariance Gaussian step can reach, and the
initial-law term. Each row's seed depends on K and y only, so rows of separate runs with the
same profile are the rows of one run. A fine-tuned gap above its class's floor is optimisation
(or the head's function class); a target below the floor cannot be met by that class at all.
With ``--greedy`` each row also gets the certificate gap of the greedy policy of the mean-only
and the diagonal class (:func:`ctrl_teach.ctrl.greedy_policy_gap`: the fitted step at every
state of its own chains), an explicit policy that shows the floor is attained (minutes per
row and class).

Usage: python benchmarks/class_floor_benchmark.py [--profile quick|full] [--steps 10 20 50]
       [--toys ring grid] [--labels 0 1] [--greedy] [--out _build/benchmarks/class_floor.json]
JSON: {"profile", "threads", "settings": {num_states, num_rollouts, num_paths}, "rows": [{toy,
c, y, K, seconds, initial, mean_only, diagonal, full, se: {class: se}, alpha_log_z,
per_step: [...], greedy (with --greedy): {class: {gap, gap_se, alpha_log_z, J, kl, floor,
seconds}}}]}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from ctrl_teach.ctrl import ProbitClassifier, gaussian_class_floor, greedy_policy_gap
from ctrl_teach.data import load_toy
from ctrl_teach.diffusion import DiffusionSampler, ExactMixtureDenoiser
from ctrl_teach.pretrained import atomic_write_bytes, load_pretrained

SETTINGS = {"quick": dict(num_states=8, num_rollouts=64, num_paths=10000),
            "full": dict(num_states=16, num_rollouts=128, num_paths=40000)}
GREEDY = {"quick": dict(num_chains=64, num_rollouts=32, num_paths=50000),
          "full": dict(num_chains=256, num_rollouts=64, num_paths=200000)}


def exact_toy_problem():
    """The toys' problem with the exact denoiser: ``(toy, schedule, network, reward)``.

    ``load_toy("gmm")``, the shipped toy's schedule, an
    :class:`~ctrl_teach.diffusion.ExactMixtureDenoiser` of its mixtures and the probit reward
    p(y = 1 | x) = Phi(x_1) of the toy tests (also used by ``gap_split_benchmark.py``).
    """
    toy = load_toy("gmm")
    schedule = load_pretrained("toy-gmm").schedule
    network = ExactMixtureDenoiser([toy.mixture(c) for c in range(toy.num_conditions)],
                                   schedule)
    return toy, schedule, network, ProbitClassifier([1.0, 0.0], 0.0, 1.0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("CTRL_TEACH_PROFILE", "quick"),
                        choices=tuple(SETTINGS))
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="K values (default: 10 20 in quick, 10 20 50 in full)")
    parser.add_argument("--toys", nargs="+", default=["ring", "grid"], choices=("ring", "grid"))
    parser.add_argument("--labels", type=int, nargs="+", default=[0, 1], choices=(0, 1))
    parser.add_argument("--greedy", action="store_true",
                        help="also score the greedy policy of the mean-only and diagonal class")
    parser.add_argument("--out", default="_build/benchmarks/class_floor.json")
    args = parser.parse_args(argv)
    steps = args.steps or ([10, 20] if args.profile == "quick" else [10, 20, 50])
    toy, schedule, network, reward = exact_toy_problem()
    settings = SETTINGS[args.profile]
    out = dict(profile=args.profile, threads=torch.get_num_threads(), settings=settings,
               rows=[])
    print(f"{'toy':5s} {'y':>2s} {'K':>3s} {'initial':>8s} {'mean-only':>15s} "
          f"{'diagonal':>15s} {'full':>15s} {'s':>6s}")
    for c, name in enumerate(toy.condition_names):
        if name not in args.toys:
            continue
        for y in args.labels:
            for K in steps:
                sampler = DiffusionSampler(schedule, num_steps=K, eta=1.0, clip_x0=3.0)
                start = time.perf_counter()
                f = gaussian_class_floor(network, sampler, reward, c=c, y=y,
                                         generator=torch.Generator().manual_seed(K + 2 * y),
                                         **settings)
                seconds = time.perf_counter() - start
                cells = "".join(f" {getattr(f, k):8.4f} ± {f.se[k]:.4f}"
                                for k in ("mean_only", "diagonal", "full"))
                print(f"{name:5s} {y:2d} {K:3d} {f.initial:8.4f}{cells} {seconds:6.0f}",
                      flush=True)
                row = dict(toy=name, c=c, y=y, K=K, seconds=seconds, initial=f.initial,
                           mean_only=f.mean_only, diagonal=f.diagonal, full=f.full, se=f.se,
                           alpha_log_z=f.alpha_log_z, per_step=f.per_step)
                if args.greedy:
                    row["greedy"] = {}
                    for kind in ("mean_only", "diagonal"):
                        start = time.perf_counter()
                        g = greedy_policy_gap(network, sampler, reward, c=c, y=y, kind=kind,
                                              generator=torch.Generator().manual_seed(
                                                  100 + K + 2 * y), **GREEDY[args.profile])
                        g["seconds"] = time.perf_counter() - start
                        row["greedy"][kind] = g
                        print(f"      greedy {kind:9s} policy: gap {g['gap']:.4f} ± "
                              f"{g['gap_se']:.4f} (its steps' floor {g['floor']:.4f}) "
                              f"{g['seconds']:6.0f}", flush=True)
                out["rows"].append(row)
                atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
