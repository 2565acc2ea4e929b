"""A static report site from what is committed, executing nothing: ``python -m headlab report [--out _site]``.

Pages (Sphinx + myst-nb with ``nb_execution_mode = "off"``, sphinx-book-theme; all offline):

* ``index``: the five papers, each headline claim's verdict, the claims-at-a-glance table (``glance.glance``,
  the README's block) and how to rerun;
* ``claims``: every committed claims row of every paper and profile (checks included, marked), with its
  kind, the paper's value and source, ours with its interval, the rule and verdict, and links to the run's
  ``claims.csv`` and its figures; filters by paper, profile, kind and verdict (plain JavaScript, works from
  ``file://``);
* ``figures``: every committed PNG beside its CSV, with the profile, the machine named in the executed
  notebook's footer, the commit that last changed it, and a BibTeX snippet to cite it;
* every stored notebook with its outputs, and the executed copies of the gpu / paper runs.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .claims import COLUMNS, saved
from .glance import glance
from .paths import NOTEBOOKS_DIR, PUBLISHED_DIR, REPO_ROOT
from .profiles import NOTEBOOKS

SITE = REPO_ROOT / "_site"


@dataclass
class Run:
    paper: str  # figures/<paper>/
    profile: str
    notebook: str  # the notebook's name (stem)
    title: str
    folder: Path
    executed: Path | None  # the executed notebook of this run, when committed

    @property
    def key(self) -> str:
        return f"{self.paper}-{self.profile}"

    def machine(self) -> str:
        """The device line of the executed notebook's footer (``headlab.session``), else what the folder's
        execution log says, else unknown. An executed notebook that skipped parts (``headlab run --skip-part``)
        names both: its own device for what it ran, the log's (or 'an earlier run') for the parts it kept."""
        log = self.folder / "gpu_exec.log"
        logged = None
        if log.exists():
            m = re.search(r"(NVIDIA [A-Z0-9 ]+|H100|H200|A100)", log.read_text(errors="replace"))
            logged = m.group(1).strip() if m else "a GPU machine (gpu_exec.log)"
        if self.executed is not None:
            text = self.executed.read_text(encoding="utf-8")
            m = re.search(r"\| device ([^\n\\\"]+)", text)
            if m:
                skipped = re.search(r"Not run here:\*\* part\(s\) ([^(]+) \(", text)
                if skipped:
                    return f"{m.group(1).strip()}; part(s) {skipped.group(1).strip()}: {logged or 'an earlier run'}"
                return m.group(1).strip()
        return logged or "not recorded"


def runs(root: Path = PUBLISHED_DIR) -> list[Run]:
    """Every committed (paper, profile) folder, notebooks in order, smoke first."""
    out = []
    for nb in sorted(NOTEBOOKS.values(), key=lambda nb: nb.name):
        base = Path(root) / nb.paper
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir(), key=lambda p: (p.name != "smoke", p.name)):
            if not folder.is_dir() or not any(folder.glob("*.png")) and not (folder / "claims.csv").exists():
                continue
            if folder.name == "smoke" and (NOTEBOOKS_DIR / f"{nb.name}.ipynb").exists():
                executed = NOTEBOOKS_DIR / f"{nb.name}.ipynb"
            else:
                executed = folder / f"{nb.name}.ipynb" if (folder / f"{nb.name}.ipynb").exists() else None
            out.append(Run(nb.paper, folder.name, nb.name, nb.title, folder, executed))
    return out


def _git_commits(paths: list[Path]) -> dict[Path, str]:
    """Short hash of the last commit that changed each path ("uncommitted" when none)."""
    out = {}
    for p in paths:
        r = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", str(p.relative_to(REPO_ROOT))],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        out[p] = r.stdout.strip() or "uncommitted"
    return out


def _citation() -> dict:
    import yaml

    return yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def bibtex(fig: Path, commit: str, cff: dict) -> str:
    rel = fig.relative_to(REPO_ROOT).as_posix()
    key = re.sub(r"[^A-Za-z0-9]+", "_", fig.relative_to(PUBLISHED_DIR).with_suffix("").as_posix())
    authors = " and ".join("{" + a.get("name", "") + "}" for a in cff.get("authors", []))
    return (
        f"@misc{{headlab_{key},\n  title = {{{cff['title']}, figure {rel}}},\n  author = {{{authors}}},\n"
        f"  year = {{{str(cff.get('date-released', ''))[:4]}}},\n  version = {{{cff.get('version', '')}}},\n"
        f"  note = {{{rel} at commit {commit}; regenerate with python -m headlab run}}\n}}"
    )


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def claims_frame(rs: list[Run]) -> pd.DataFrame:
    """All committed claims and checks rows, one frame, with the run they belong to."""
    frames = []
    for r in rs:
        for name in ("claims", "checks"):
            p = r.folder / f"{name}.csv"
            if p.exists():
                d = pd.read_csv(p, dtype=str, keep_default_na=False).reindex(columns=COLUMNS, fill_value="")
                frames.append(d.assign(notebook=r.notebook, paper=r.paper, profile=r.profile, file=name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "notebook"])


FILTER_JS = """<script>
function headlabFilter() {
  const f = {};
  document.querySelectorAll("select.hl-filter").forEach(s => f[s.dataset.col] = s.value);
  let shown = 0;
  document.querySelectorAll("#hl-claims tbody tr").forEach(tr => {
    const ok = Object.entries(f).every(([c, v]) => v === "" || tr.dataset[c] === v);
    tr.style.display = ok ? "" : "none";
    shown += ok;
  });
  document.getElementById("hl-shown").textContent = shown;
}
// a link can carry filters: claims.html#verdict=reproduced&notebook=05_moh
window.addEventListener("DOMContentLoaded", () => {
  new URLSearchParams(location.hash.slice(1)).forEach((v, k) => {
    const s = document.querySelector(`select.hl-filter[data-col="${k}"]`);
    if (s) s.value = v;
  });
  headlabFilter();
});
</script>"""


def dashboard(d: pd.DataFrame) -> str:
    """The claims page body (raw HTML): filters and one table of every row."""
    filters = []
    for col, label in (("notebook", "notebook"), ("profile", "profile"), ("kind", "kind"), ("verdict", "verdict")):
        opts = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(d[col].unique()))
        filters.append(
            f'<label>{label} <select class="hl-filter" data-col="{col}" onchange="headlabFilter()">'
            f'<option value="">all</option>{opts}</select></label>'
        )
    rows = []
    for r in d.itertuples():
        est = f"{r.estimate} [{r.ci_low}, {r.ci_high}]" if r.ci_low else r.estimate
        stat = f"{_e(r.statistic)}: {_e(est)}" if r.statistic else _e(est)
        n = f"{r.n} {r.unit}".strip() if r.n else ""
        run_dir = f"figures/{r.paper}/{r.profile}"
        rows.append(
            f'<tr data-notebook="{_e(r.notebook)}" data-profile="{_e(r.profile)}" data-kind="{_e(r.kind)}" '
            f'data-verdict="{_e(r.verdict)}"><td>{_e(r.notebook)}</td><td>{_e(r.profile)}</td>'
            f"<td>{_e(r.claim_id)}</td><td>{_e(r.kind)}</td><td>{_e(r.statement)}</td>"
            f"<td>{_e(r.paper_value)}<br><i>{_e(r.source)}</i></td><td>{_e(r.our_value)}</td>"
            f"<td>{stat}<br><i>{_e(n)}</i></td><td><i>{_e(r.rule)}</i></td>"
            f"<td><b>{_e(r.verdict)}</b></td>"
            f'<td><a href="{run_dir}/{r.file}.csv">{r.file}.csv</a><br>'
            f'<a href="figures.html#{_e(r.paper)}-{_e(r.profile)}">figures</a></td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "notebook",
            "profile",
            "claim",
            "kind",
            "statement",
            "paper (source)",
            "ours",
            "statistic: estimate [95% CI]",
            "rule",
            "verdict",
            "from",
        )
    )
    return (
        f"{FILTER_JS}\n<style>.bd-article-container {{max-width: none !important}} #hl-claims {{font-size: 0.78em}} "
        "#hl-claims td {vertical-align: top}</style>\n"
        f'<p>{" ".join(filters)} — <span id="hl-shown">{len(d)}</span> of {len(d)} rows</p>\n'
        f'<div style="overflow-x: auto"><table id="hl-claims" class="table"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def gallery(rs: list[Run]) -> str:
    cff = _citation()
    pngs = [p for r in rs for p in sorted(r.folder.glob("*.png")) if not p.name.startswith(".")]
    commits = _git_commits(pngs)
    parts = []
    for r in rs:
        figs = [p for p in pngs if p.parent == r.folder]
        if not figs:
            continue
        parts.append(
            f'## {r.notebook}, {r.profile}\n\n```{{raw}} html\n<div id="{_e(r.key)}"></div>\n'
            f"<p>Machine: {_e(r.machine())}. Folder: <code>figures/{_e(r.paper)}/{_e(r.profile)}/</code>.</p>\n"
        )
        for p in figs:
            rel = p.relative_to(REPO_ROOT).as_posix()
            csv = saved(p.parent, p.stem)  # the figure's table, plain or gzipped
            csv_link = f'<a href="{_e(csv.relative_to(REPO_ROOT).as_posix())}">CSV</a>' if csv else "no CSV"
            parts.append(
                f'<figure id="{_e(r.key)}-{_e(p.stem)}"><img src="{_e(rel)}" alt="{_e(rel)}" loading="lazy" '
                f'style="max-width:100%"><figcaption><b>{_e(p.stem)}</b> · {csv_link} · profile {_e(r.profile)} · '
                f"commit <code>{_e(commits[p])}</code><details><summary>cite this figure</summary><pre>"
                f"{_e(bibtex(p, commits[p], cff))}</pre></details></figcaption></figure>\n"
            )
        parts.append("```\n")
    return "\n".join(parts)


def index_page(rs: list[Run]) -> str:
    papers = []
    for nb in sorted(NOTEBOOKS.values(), key=lambda nb: nb.name):
        profiles = ", ".join(r.profile for r in rs if r.notebook == nb.name)
        papers.append(f"- **{nb.title}** (`notebooks/{nb.name}.ipynb`; committed runs: {profiles or 'none'})")
    return f"""# headlab: the replication report

Every page here is built from what the repository commits (stored notebooks with their outputs, each run's
tidy CSVs, figures and claims tables); nothing is executed to build it. Rebuild with `make report`.

## The notebooks

{chr(10).join(papers)}

## Claims at a glance

Verdict counts of the papers' own claims; our hypotheses and pilot targets and the software self-checks are
counted apart. A claim is reproduced or not reproduced only when the 95 % interval of its deciding statistic
lies wholly on one side of its rule, otherwise inconclusive. Every row, with its evidence: [the claims
dashboard](claims.md).

{glance()}

## How to rerun

```bash
make reproduce                       # set up, cache the models, run every notebook at profile smoke
python -m headlab run --profile gpu 03_heads_cooperate   # one notebook at the sizes that decide claims
python -m headlab claims 05_moh --profile smoke          # rebuild a claims table from its CSVs alone
make report                          # this site, into _site/
```

```{{toctree}}
:hidden:
:maxdepth: 1

claims
figures
{chr(10).join(_notebook_pages(rs))}
```
"""


def _notebook_pages(rs: list[Run]) -> list[str]:
    pages = [f"notebooks/{n}" for n in sorted(NOTEBOOKS) if (NOTEBOOKS_DIR / f"{n}.ipynb").exists()]
    pages += [f"runs/{r.notebook}-{r.profile}" for r in rs if r.profile != "smoke" and r.executed is not None]
    return pages


CONF = """project = "headlab"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # render the stored outputs; never start a kernel
html_theme = "sphinx_book_theme"
html_title = "headlab report"
html_extra_path = ["_extra"]  # figures/ copied verbatim: the PNGs and CSVs the pages link to
exclude_patterns = ["_build", "_extra"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]
html_theme_options = {"show_toc_level": 2}
html_copy_source = False
"""


def build(out: Path = SITE, quiet: bool = True) -> Path:
    """Write the sources into a temporary folder and build the site into ``out`` (replaced only on success)."""
    from sphinx.cmd.build import build_main

    t0 = time.time()
    rs = runs()
    if not rs:
        raise FileNotFoundError("no committed runs under figures/: nothing to report")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="headlab-report-") as tmp:
        src = Path(tmp) / "src"
        (src / "notebooks").mkdir(parents=True)
        (src / "runs").mkdir()
        (src / "conf.py").write_text(CONF)
        (src / "index.md").write_text(index_page(rs), encoding="utf-8")
        d = claims_frame(rs)
        (src / "claims.md").write_text(
            "---\nhtml_theme.sidebar_secondary.remove: true\n---\n\n"
            "# Claims dashboard\n\nEvery committed claims row (and self-check, kind *check*) of every notebook and "
            "profile. The interval is a 95 % interval over the unit named under it; the rule decides the verdict.\n\n"
            f"Verdict counts of the papers' own claims per run (the README's table):\n\n{glance().split(chr(10) * 2)[0]}\n\n"
            f"```{{raw}} html\n{dashboard(d)}\n```\n",
            encoding="utf-8",
        )
        (src / "figures.md").write_text(
            "# Figures\n\nEvery committed figure beside the tidy CSV it was drawn from.\n\n" + gallery(rs),
            encoding="utf-8",
        )
        for nb in NOTEBOOKS.values():
            p = NOTEBOOKS_DIR / f"{nb.name}.ipynb"
            if p.exists():
                shutil.copy(p, src / "notebooks" / p.name)
        for r in rs:
            if r.profile != "smoke" and r.executed is not None:
                nb = json.loads(r.executed.read_text(encoding="utf-8"))
                md = {
                    "cell_type": "markdown",
                    "id": "headlab-run-title",
                    "metadata": {},
                    "source": [f"# {r.title}: the {r.profile} run\n"],
                }
                nb["cells"] = [md] + nb["cells"]
                (src / "runs" / f"{r.notebook}-{r.profile}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
        shutil.copytree(PUBLISHED_DIR, src / "_extra" / "figures", ignore=shutil.ignore_patterns(".*", "*.ipynb"))
        build_dir = Path(tmp) / "html"
        args = ["-b", "html", "-j", "auto", *(["-q"] if quiet else []), str(src), str(build_dir)]
        if build_main(args) != 0:
            raise RuntimeError("sphinx-build failed (see its messages above); the previous site is left as it was")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(build_dir, out, ignore=shutil.ignore_patterns(".doctrees", ".buildinfo"))
    print(f"report: {out} ({len(rs)} runs, {len(d)} claims rows) in {time.time() - t0:.0f} s")
    return out


def broken_links(site: Path) -> list[str]:
    """Every relative href/src in the site's HTML that does not resolve to a file of the site."""
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = []

        def handle_starttag(self, tag, attrs):
            for k, v in attrs:
                if k in ("href", "src") and v:
                    self.found.append(v)

    bad = []
    for page in Path(site).rglob("*.html"):
        if page.relative_to(site).parts[0] == "_static":  # the theme's own template fragments, not pages
            continue
        p = Links()
        p.feed(page.read_text(encoding="utf-8", errors="replace"))
        for link in p.found:
            if re.match(r"^(https?:|mailto:|data:|javascript:|#)", link):
                continue
            target = link.split("#", 1)[0].split("?", 1)[0]
            if target and not (page.parent / target).resolve().exists():
                bad.append(f"{page.relative_to(site)} -> {link}")
    return bad
