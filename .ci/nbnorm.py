#!/usr/bin/env python3
"""One JSON policy for the stored notebooks (stdlib only; `make lint` and pre-commit run it).

    python3 .ci/nbnorm.py notebooks/*.ipynb          # check: list every departure, exit 1 if any
    python3 .ci/nbnorm.py --fix notebooks/*.ipynb    # rewrite what can be fixed mechanically

The policy is what `headlab run` stores (lib/headlab/run.py, clean): notebook metadata holds only
kernelspec and language_info, with the one kernel; no papermill, execution or widget bookkeeping;
cell metadata holds tags only; every code cell's execution count is its position (or empty); no
error outputs and no stderr streams (a failed or noisy run is not stored); JSON with one-space indent,
non-ASCII kept, a final newline. Errors and stderr cannot be fixed here: rerun the notebook.
"""

import json
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3 (headlab)", "language": "python", "name": "python3"}
NB_KEYS = {"kernelspec", "language_info"}
CELL_MD_KEYS = {"tags"}


def problems(nb: dict, fix: bool) -> list[str]:
    out = []
    md = nb.setdefault("metadata", {})
    for k in sorted(set(md) - NB_KEYS):
        out.append(f"notebook metadata {k!r}")
        if fix:
            del md[k]
    if md.get("kernelspec") != KERNELSPEC:
        out.append(f"kernelspec {md.get('kernelspec')} (want {KERNELSPEC})")
        if fix:
            md["kernelspec"] = dict(KERNELSPEC)
    for i, c in enumerate(nb.get("cells", [])):
        where = f"cell {i + 1} ({c.get('id', 'no id')})"
        cmd = c.setdefault("metadata", {})
        for k in sorted(set(cmd) - CELL_MD_KEYS):
            out.append(f"{where}: metadata {k!r}")
            if fix:
                del cmd[k]
        if c.get("cell_type") != "code":
            continue
        n = c.get("execution_count")
        if n is not None and n != i + 1:
            out.append(f"{where}: execution_count {n} (want {i + 1})")
            if fix:
                c["execution_count"] = i + 1
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"{where}: an error output ({o.get('ename')}): rerun the notebook")
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                out.append(f"{where}: a stderr stream: silence the warning at its source and rerun")
            if "execution_count" in o and n is not None and o["execution_count"] != c.get("execution_count"):
                out.append(f"{where}: output execution_count {o['execution_count']}")
                if fix:
                    o["execution_count"] = c["execution_count"]
    return out


def main(argv: list[str]) -> int:
    fix = "--fix" in argv
    paths = [Path(a) for a in argv if a != "--fix"]
    if not paths:
        print("usage: nbnorm.py [--fix] NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    bad = 0
    for p in paths:
        text = p.read_text(encoding="utf-8")
        nb = json.loads(text)
        found = problems(nb, fix)
        canonical = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if canonical != text and not found:
            found.append("JSON layout (indent 1, non-ASCII kept, final newline)")
        if fix and canonical != text:
            p.write_text(canonical, encoding="utf-8")
        left = [f for f in found if "rerun" in f] if fix else found
        for f in left:
            print(f"{p}: {f}")
        bad += bool(left)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
