"""Command line: ``python -m ctrl_teach.pretrained {list, retrain NAME... | all}``."""

from __future__ import annotations

import argparse
import json

from .registry import PRETRAINED_NAMES, describe, retrain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctrl_teach.pretrained",
                                     description="List or retrain the shipped models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print each shipped model and its recorded metrics")
    p = sub.add_parser("retrain", help="retrain from seeds and overwrite the shipped files")
    p.add_argument("names", nargs="+", choices=[*PRETRAINED_NAMES, "all"])
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in PRETRAINED_NAMES:
            meta = describe(name)
            print(f"{name:14s} {meta['num_bytes'] / 1024:7.1f} KiB  "
                  f"{json.dumps(meta.get('metrics', {}))}")
        return 0
    names = PRETRAINED_NAMES if "all" in args.names else args.names
    ordered = sorted(names, key=lambda n: n != "digit-oracle")  # digits is evaluated by it
    for name in ordered:
        meta = retrain(name, device=args.device)
        print(f"{name}: {json.dumps(meta['metrics'])} ({meta['training'].get('seconds', 0):.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
