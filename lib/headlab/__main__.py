"""Command line: ``python -m headlab {run,cache,bench,list}``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="headlab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks with papermill")
    r.add_argument("--profile", default="smoke", help="smoke | gpu | paper")
    r.add_argument("notebooks", nargs="*", help="notebook names (default: all in notebooks/)")
    r.add_argument("--set", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="set a knob of the notebooks' parameters cells (VALUE read as JSON, else a string), "
                        "e.g. --set pretrained=false")
    c = sub.add_parser("cache", help="dequantise the offline GGUF models into .cache/models (once)")
    c.add_argument("--force", action="store_true")
    b = sub.add_parser("bench", help="hook overhead, cached load time, training steps/s")
    b.add_argument("--repeats", type=int, default=5)
    sub.add_parser("list", help="notebooks, profiles and offline models")
    a = ap.parse_args(argv)

    from .profiles import ProfileError

    try:
        if a.cmd == "run":
            from .run import run

            from .run import parse_params

            return run(a.notebooks, a.profile, parse_params(a.params))
        if a.cmd == "cache":
            from .models import build_cache, model_names

            for n in model_names():
                print(f"{n}: {build_cache(n, force=a.force)}", flush=True)
            return 0
        if a.cmd == "bench":
            from .bench import main as bench

            return bench(a.repeats)
        if a.cmd == "list":
            from .models import OFFLINE_MODELS
            from .profiles import NOTEBOOKS, PROFILES
            from .run import available

            have = set(available())
            print("profiles:", ", ".join(PROFILES))
            for n, nb in NOTEBOOKS.items():
                print(f"  {n:<22} {'' if n in have else '(not written yet) '}{nb.title}")
            for n, m in OFFLINE_MODELS.items():
                print(f"model {n:<14} {m.about}")
            return 0
    except ProfileError as e:
        print(f"headlab: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
