"""Chapter 8 experiments: CTRL against its baselines, as tables and a JSON file.

Runs, with the sizes of a profile (``ctrl_teach.experiments.config``):

(a) sample efficiency versus the number of labelled examples N (toy-gmm and digits),
(b) dataset construction: two attributes labelled separately (CTRL) vs jointly (CFG),
(c) strength sweeps (CTRL gamma, CFG w, classifier-guidance scale, DPS step),
(d) sampling cost (network evaluations and wall time per 1000 samples, ratios to CTRL),
(e) fine-tuning cost (time and peak memory per iteration vs K and gradient mode),

prints one table per experiment and writes the results as JSON (layout:
benchmarks/SCHEMA.md). ``--profile quick`` fits a 2-core CPU in about ten minutes;
``--profile full`` is meant for a GPU. The default profile comes from CTRL_TEACH_PROFILE.
``--scale F`` multiplies every training budget (``*_iterations``) of the profile by ``F``;
``--toy-only`` drops the digits runs. The stored CPU run the book reads,
``ctrl_teach/book_data/experiments_full_cpu.json``, was made with

    OMP_NUM_THREADS=1 python benchmarks/experiments_benchmark.py --profile full --scale 4 \
        --ctrl-scale 2 --toy-only --out ctrl_teach/book_data/experiments_full_cpu.json

(one CPU thread, 91 minutes beside another single-threaded job). ``--ctrl-scale G``
multiplies CTRL's fine-tuning budgets by a further ``G``.

Usage: OMP_NUM_THREADS=1 python benchmarks/experiments_benchmark.py [--profile quick|full]
       [--only sample_efficiency strength ...] [--scale F] [--toy-only] [--out FILE]
       [--figures DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

from ctrl_teach.experiments import (
    EXPERIMENTS,
    experiment_config,
    format_tables,
    run_all,
    validate_results,
)
from ctrl_teach.experiments.config import scaled_config, toy_only
from ctrl_teach.pretrained import atomic_write_bytes


def _clean(obj):
    """JSON-safe copy: NaN / inf become None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv=None):
    from ctrl_teach import profile as current_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("quick", "full"), default=None,
                        help="default: CTRL_TEACH_PROFILE (quick without CUDA)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=None,
                        help="run only these experiments")
    parser.add_argument("--out", default="experiments_benchmark.json")
    parser.add_argument("--figures", default=None,
                        help="also save one PNG per experiment into this directory")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every training budget (*_iterations) of the profile "
                             "by this factor (default 1)")
    parser.add_argument("--ctrl-scale", type=float, default=1.0,
                        help="multiply CTRL's fine-tuning budgets (ctrl_iterations) by this "
                             "further factor (default 1)")
    parser.add_argument("--toy-only", action="store_true",
                        help="skip the digits runs (a CPU-sized run of the full profile)")
    args = parser.parse_args(argv)
    profile = args.profile or current_profile()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(1)
    config = experiment_config(profile)
    if args.scale != 1.0 or args.ctrl_scale != 1.0:
        config = scaled_config(config, args.scale, ctrl_scale=args.ctrl_scale)
    if args.toy_only:
        config = toy_only(config)
    start = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = run_all(config, profile=profile, device=device, only=args.only,
                      seed=args.seed)
    results.update(command="python benchmarks/experiments_benchmark.py "
                           + " ".join(sys.argv[1:] if argv is None else argv),
                   scale=args.scale, ctrl_scale=args.ctrl_scale, toy_only=args.toy_only,
                   loadavg_before=load_before,
                   loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None)
    validate_results(results)
    print()
    print(format_tables(results))
    print("notes:")
    for note in results["notes"]:
        print(f"  - {note}")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in results["timings"].items())
    print(f"total {time.perf_counter() - start:.0f} s ({timings}) on {device}, "
          f"profile {profile}")
    atomic_write_bytes(args.out, json.dumps(_clean(results), indent=1).encode())
    print(f"wrote {args.out}")
    if args.figures:
        import matplotlib

        matplotlib.use("Agg")
        from ctrl_teach.experiments import plot_all

        os.makedirs(args.figures, exist_ok=True)
        for name, fig in plot_all(results).items():
            fig.savefig(os.path.join(args.figures, f"{name}.png"), dpi=110)
        print(f"figures in {args.figures}/")


if __name__ == "__main__":
    main()
