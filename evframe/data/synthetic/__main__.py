"""``python -m evframe.data.synthetic ROOT [--preset tiny] [--seed 0] [--workers N] [--force]``."""

from __future__ import annotations

import argparse
import time

from evframe.data.synthetic.cache import ensure_dataset
from evframe.data.synthetic.config import PRESETS
from evframe.data.synthetic.generate import generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the evframe synthetic event dataset.")
    parser.add_argument("root", help="output folder")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    parser.add_argument("--force", action="store_true", help="write even if an identical dataset is cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.force:
        generate(args.root, args.preset, args.seed, num_workers=args.workers, verbose=True)
    else:
        path = ensure_dataset(args.root, args.preset, args.seed, num_workers=args.workers, verbose=True)
        print(f"dataset ready at {path} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
