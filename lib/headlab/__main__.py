"""Command line: ``python -m headlab {run,replot,claims,report,cache,bench,list,ship,lenses}``."""

from __future__ import annotations

import argparse
import json
import sys

from .profiles import NOTEBOOKS

# every notebook's figures are drawn by <module>.figures from their tidy CSVs (a FROM_CSV registry); the module is
# headlab.papers.<paper> unless the notebook's params file names another (06: headlab.lenses)
REPLOT = {name: f"{nb.module}.figures" for name, nb in NOTEBOOKS.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="headlab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks with papermill")
    r.add_argument("--profile", default="smoke", help="smoke | gpu | paper")
    r.add_argument("notebooks", nargs="*", help="notebook names (default: all in notebooks/)")
    r.add_argument(
        "--set",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a knob of the notebooks' parameters cells, or any value of notebooks/NB.params.yml "
        "(VALUE read as JSON, else a string), e.g. --set pretrained=false --set seed=3",
    )
    r.add_argument(
        "--rehearse",
        action="store_true",
        help="with --profile gpu or paper: run that profile's code paths on the CPU at toy sizes (figures under "
        ".cache/rehearse; paper's hub models become tiny random twins of their architectures), to check a run "
        "before spending device time",
    )
    r.add_argument(
        "--skip-part",
        dest="skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave the code cells tagged part-NAME unexecuted (their CSVs in the run's folder stay an earlier run's), "
        "e.g. --skip-part bytes runs only notebook 02's SmolLM2 half",
    )
    r.add_argument(
        "--executor",
        default=None,
        help="where independent runs of a sweep go: process (default: a local process pool), serial, submitit "
        "(SLURM when srun exists, else local processes; HEADLAB_SLURM='{\"partition\": ...}'), submitit-slurm, "
        "submitit-local, submitit-debug (in-process); sets HEADLAB_EXECUTOR for the notebooks' kernels",
    )
    rp = sub.add_parser(
        "replot",
        help="redraw a run's figures that are drawn from their CSV alone (after a layout "
        "fix), without rerunning the notebook",
    )
    rp.add_argument("notebook", help="notebook name, e.g. 03_heads_cooperate")
    rp.add_argument("--profile", default="smoke", help="whose committed CSVs: smoke | gpu | paper | full")
    cl = sub.add_parser(
        "claims",
        help="rebuild a run's claims.csv and checks.csv from its saved CSVs (no model, no "
        "kernel), e.g. after a rule is corrected",
    )
    cl.add_argument("notebook", nargs="?", help="notebook name, e.g. 05_moh")
    cl.add_argument("--glance", action="store_true", help="print the README's claims-at-a-glance block instead")
    cl.add_argument("--profile", default="smoke", help="whose committed CSVs: smoke | gpu | paper")
    cl.add_argument("--check", action="store_true", help="compare with the committed claims instead of writing")
    rep = sub.add_parser(
        "report", help="build the static report site (notebooks, claims dashboard, figure gallery) into _site/"
    )
    rep.add_argument("--out", default=None, help="output folder (default: _site/ at the repository root)")
    c = sub.add_parser("cache", help="dequantise the offline GGUF models into .cache/models (once)")
    c.add_argument("models", nargs="*", help="offline model names (default: all)")
    c.add_argument("--force", action="store_true")
    b = sub.add_parser(
        "bench",
        help="edit overheads, cached load time, training speed-up: medians with IQRs, "
        "written to figures/bench/<machine>/bench.csv",
    )
    b.add_argument("--quick", action="store_true", help="a fast look: SmolLM2 only, 3 pairs, nothing written")
    b.add_argument("--table", action="store_true", help="print the README's table from the committed CSV")
    b.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the suite N times, each in a fresh process (make bench: 3), and report whether the runs agree",
    )
    sub.add_parser("list", help="notebooks, profiles and offline models")
    from .ship import PART_MIB

    s = sub.add_parser(
        "ship", help="split an offline model's GGUF into parts for a size-limited transfer, or reassemble it"
    )
    s.add_argument("action", choices=["pack", "unpack", "plan"], help="plan: check the device calls' transfer sizes")
    s.add_argument(
        "models", nargs="*", help="pack: offline model names, or corpus-big for the big corpus (default: smollm2-135m)"
    )
    s.add_argument(
        "--max-mb", type=int, default=PART_MIB, help=f"pack: largest part in MiB ({PART_MIB}: .ci/device/plan.txt's)"
    )
    le = sub.add_parser("lenses", help="every head of one model through five lenses: a tidy table and figures")
    le.add_argument("model", help="an offline model name, a hub id, or a local model folder")
    le.add_argument("--texts", default="prose,code,dialogue", help="comma-separated text types of data/corpus")
    le.add_argument("--per-type", type=int, default=2, help="windows per text type")
    le.add_argument("--tokens", type=int, default=96, help="tokens per window")
    le.add_argument(
        "--ablate", type=int, default=12, help="heads ablated exactly at random (plus half as many dormant)"
    )
    le.add_argument("--attn", default="eager", help="attention implementation (the lenses need eager)")
    le.add_argument("--device", default="cpu")
    le.add_argument("--out", default="lenses-out", help="output folder")
    a = ap.parse_args(argv)

    from .profiles import ProfileError
    from .ship import ShipError

    try:
        if a.cmd == "run":
            from .run import parse_params, run

            return run(
                a.notebooks, a.profile, parse_params(a.params), rehearse=a.rehearse, executor=a.executor, skip=a.skip
            )
        if a.cmd == "replot":
            import importlib

            if a.notebook not in REPLOT:
                raise ProfileError(f"unknown notebook {a.notebook!r}; known: {', '.join(REPLOT)}")
            mod = importlib.import_module(REPLOT[a.notebook])
            from .figures import replot_from

            for path in replot_from(mod.FROM_CSV, NOTEBOOKS[a.notebook].paper, a.profile):
                print(f"redrawn: {path}")
            return 0
        if a.cmd == "report":
            from pathlib import Path

            from .report import SITE, broken_links, build

            site = build(Path(a.out) if a.out else SITE)
            bad = broken_links(site)
            for b in bad:
                print(f"broken link: {b}")
            return 1 if bad else 0
        if a.cmd == "claims":
            from .claims import rebuild
            from .glance import glance
            from .paths import PUBLISHED_DIR

            if a.glance:
                print(glance(), end="")
                return 0
            if a.notebook not in NOTEBOOKS:
                raise ProfileError(f"unknown notebook {a.notebook!r}; known: {', '.join(NOTEBOOKS)}")
            folder = PUBLISHED_DIR / NOTEBOOKS[a.notebook].paper / a.profile
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: no committed run of {a.notebook} at profile {a.profile!r}")
            C = rebuild(NOTEBOOKS[a.notebook].paper, a.profile, folder)
            if a.check:
                import tempfile
                from pathlib import Path

                with tempfile.TemporaryDirectory() as tmp:
                    C.save(tmp)
                    same = all(
                        (Path(tmp) / f).read_text() == (folder / f).read_text()
                        for f in ("claims.csv", "checks.csv")
                        if (folder / f).exists()
                    )
                print("claims match the committed tables" if same else "claims DIFFER from the committed tables")
                return 0 if same else 1
            print(C.show(folder=folder))
            return 0
        if a.cmd == "cache":
            from .models import build_cache, model_names

            for n in a.models or model_names():
                if n not in model_names():
                    raise ProfileError(f"unknown offline model {n!r}; known: {', '.join(model_names())}")
                print(f"{n}: {build_cache(n, force=a.force)}", flush=True)
            return 0
        if a.cmd == "bench":
            from .bench import main as bench

            return bench(quick=a.quick, print_table=a.table, runs=a.runs)
        if a.cmd == "ship":
            from . import ship

            if a.action == "plan":  # .ci/device/plan.txt: every call's working tree + carry against 64 MiB
                rows = ship.check_plan(ship.read_plan())
                for i, r in enumerate(rows, 1):
                    state = "ok" if r["fits"] and r["capped"] else "OVER 64 MiB" if not r["fits"] else "NO LIMIT="
                    print(
                        f"call {i}: {r['total'] / ship.MiB:5.1f} MiB (tree {r['tree'] / ship.MiB:.1f} + carry "
                        f"{r['carried'] / ship.MiB:.1f}) {state}, <= {r['minutes']:g} min: {r['command']}"
                    )
                minutes = ship.plan_minutes(rows)
                print(
                    f"<= {minutes:g} of {ship.LEASE_MINUTES} device-minutes ({ship.START_MINUTES:g} for the machine's "
                    "start; each run stops at its LIMIT)"
                )
                ok = all(r["fits"] and r["capped"] for r in rows) and minutes <= ship.LEASE_MINUTES
                return 0 if ok else 2
            if a.action == "unpack":
                for path in ship.unpack():
                    print(f"reassembled and checked: {path}")
                return 0
            for n in a.models or ["smollm2-135m"]:
                mf = ship.pack(n, max_bytes=a.max_mb * ship.MiB)
                parts = json.loads(mf.read_text())["parts"]
                print(
                    f"{n}: {mf.relative_to(mf.parents[1])} + {len(parts)} parts: "
                    + ", ".join(f"{p['file']} ({p['bytes'] / ship.MiB:.1f} MiB)" for p in parts)
                )
            return 0
        if a.cmd == "lenses":
            from pathlib import Path

            from .lenses.cli import run as lenses
            from .models import OfflineError

            try:
                lenses(a.model, Path(a.out), a.texts.split(","), a.per_type, a.tokens, a.ablate, a.ablate // 2,
                       a.device, a.attn)  # fmt: skip
            except (ValueError, OfflineError) as e:
                print(f"headlab: error: {e}", file=sys.stderr)
                return 2
            return 0
        if a.cmd == "list":
            from .models import OFFLINE_MODELS
            from .profiles import PROFILES
            from .run import available

            have = set(available())
            print("profiles:", ", ".join(PROFILES))
            for n, nb in NOTEBOOKS.items():
                print(f"  {n:<22} {'' if n in have else '(not written yet) '}{nb.title}")
            for n, m in OFFLINE_MODELS.items():
                print(f"model {n:<14} {m.about}")
            return 0
    except (ProfileError, ShipError, FileNotFoundError) as e:
        print(f"headlab: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
