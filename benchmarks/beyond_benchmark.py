"""Beyond CTRL: every method on the 1-D Gaussian and the 2-D toy at equal wall-time budgets.

    python benchmarks/beyond_benchmark.py [--profile quick|full] [--budgets 3 10 30]
                                          [--problems gaussian toy] [--out PATH]

Runs :func:`ctrl_teach.beyond.compare.run_experiment` (CTRL, policy gradient, adjoint matching,
relative trajectory balance, DRaFT-1, twisted SMC; hyper-parameters in
``ctrl_teach.beyond.compare.HYPERPARAMETERS``), prints the table (method x problem x budget:
certificate gap ± SE, or SMC's ``alpha (log Z_hat - log Z)``; energy distance to the exact
rejection-sampled target; mean confidence vs the exact target's; network evaluations and
milliseconds per sample; fine-tuning seconds; peak MB), writes the JSON (with
``os.getloadavg()``: wall-time budgets on a loaded machine buy fewer iterations) and, with
``--figure PATH``, the figure of energy distance against total compute.

Profiles: ``quick`` budgets 3, 10, 30 s, 1000 evaluation samples, 8000 candidates per pair for
the exact target; ``full`` budgets 10, 30, 100, 300 s, 4000 samples, 40000 candidates.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from ctrl_teach.beyond.compare import METHODS, format_table, plot_compute, run_experiment

PROFILES = dict(quick=dict(budgets=[3.0, 10.0, 30.0], num_samples=1000, num_candidates=8000),
                full=dict(budgets=[10.0, 30.0, 100.0, 300.0], num_samples=4000,
                          num_candidates=40000))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("CTRL_TEACH_PROFILE", "quick"),
                        choices=tuple(PROFILES))
    parser.add_argument("--budgets", type=float, nargs="+", default=None,
                        help="wall-time budgets in seconds (default: the profile's)")
    parser.add_argument("--problems", nargs="+", default=["gaussian", "toy"],
                        choices=("gaussian", "toy", "stress"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="_build/benchmarks/beyond.json")
    parser.add_argument("--figure", default=None, help="also save the figure here")
    args = parser.parse_args(argv)
    cfg = dict(PROFILES[args.profile])
    if args.budgets:
        cfg["budgets"] = args.budgets
    result = run_experiment(args.problems, args.methods, cfg["budgets"], seed=args.seed,
                            num_samples=cfg["num_samples"],
                            num_candidates=cfg["num_candidates"])
    result.update(profile=args.profile, problems=args.problems,
                  device="cuda" if torch.cuda.is_available() else "cpu",
                  command="python benchmarks/beyond_benchmark.py " + " ".join(argv or []))
    print()
    print(format_table(result["rows"]))
    print(f"load average {result['loadavg_before']} -> {result['loadavg']}, "
          f"{result['torch_threads']} torch threads, {result['wall_s']:.0f} s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    if args.figure:
        plot_compute(result).savefig(args.figure, dpi=120)
        print(f"wrote {args.figure}")
    return result


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
