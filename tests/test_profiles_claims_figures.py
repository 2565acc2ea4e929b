"""Bad input fails early and clearly; the claims command; figures are atomic."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from headlab import figures, profiles, run  # noqa: E402
from headlab.__main__ import REPLOT, main  # noqa: E402
from headlab.profiles import ProfileError  # noqa: E402


def test_resolve_smoke_and_overrides():
    P = profiles.resolve("00_headlab_tour", "smoke", seed=3)
    assert P.profile == "smoke" and P.seed == 3 and P.paper == "tour"


@pytest.mark.parametrize(
    "args,match",
    [
        (("00_headlab_tour", "fast"), "unknown profile 'fast'"),
        (("99_nope", "smoke"), "unknown notebook '99_nope'"),
    ],
)
def test_resolve_rejects_unknown_names(args, match):
    with pytest.raises(profiles.ProfileError, match=match):
        profiles.resolve(*args)


def test_resolve_rejects_unknown_parameter():
    with pytest.raises(profiles.ProfileError, match="unknown parameter"):
        profiles.resolve("00_headlab_tour", "smoke", sead=1)


def test_gpu_profile_without_gpu(monkeypatch):
    monkeypatch.setattr(profiles, "_gpu_available", lambda: False)
    with pytest.raises(profiles.ProfileError, match="needs a CUDA GPU"):
        profiles.resolve("00_headlab_tour", "gpu")


def test_paper_profile_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(profiles.ProfileError, match="hub"):
        profiles.resolve("00_headlab_tour", "paper")


def test_profiles_inherit_and_every_notebook_has_all_three():
    for nb in profiles.NOTEBOOKS.values():
        assert set(nb.params) == set(profiles.PROFILES)
        assert set(nb.params["smoke"]) == set(nb.params["gpu"]) == set(nb.params["paper"])


def test_params_files_load_and_inherit_and_refuse_unknown_names(tmp_path):
    from headlab.paths import NOTEBOOKS_DIR

    stored = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert sorted(profiles.NOTEBOOKS) == stored  # one params file per notebook, none without a notebook
    moh = profiles.NOTEBOOKS["05_moh"]
    assert moh.params["smoke"]["lm_steps"] == 80 and moh.params["gpu"]["lm_steps"] == 600  # gpu overrides smoke
    assert moh.params["paper"]["lm_steps"] == 600 and moh.params["paper"]["use_hub"] is True  # paper inherits gpu
    for nb in profiles.NOTEBOOKS.values():
        assert nb.rehearse, f"{nb.name}: no rehearsal sizes (headlab run --profile gpu|paper --rehearse)"
        assert set(nb.rehearse) | set(nb.rehearse_paper) <= set(nb.params["gpu"])
    bad = tmp_path / "99_x.params.yml"
    bad.write_text("paper: x\ntitle: x\nprofiles:\n  smoke: {seed: 0}\n  gpu: {sead: 1}\n")
    with pytest.raises(profiles.ProfileError, match=r"99_x.params.yml: gpu sets \['sead'\]"):
        profiles.load_params(bad)
    bad.write_text("paper: [x\n")
    with pytest.raises(profiles.ProfileError, match="not valid YAML"):
        profiles.load_params(bad)


def test_overrides_as_dict_or_papermill_json_text():
    assert profiles.resolve("00_headlab_tour", "smoke", {"seed": 3}).seed == 3
    assert profiles.resolve("00_headlab_tour", "smoke", '{"seed": 4, "max_tokens": 16}').max_tokens == 16
    assert profiles.resolve("00_headlab_tour", "smoke", {"seed": 5}, seed=1).seed == 5  # the run's overrides win
    with pytest.raises(profiles.ProfileError, match="JSON object"):
        profiles.resolve("00_headlab_tour", "smoke", "seed=3")
    with pytest.raises(profiles.ProfileError, match="unknown parameter"):
        profiles.resolve("00_headlab_tour", "smoke", {"sead": 3})


def test_set_splits_knobs_from_profile_values_and_refuses_unknown_names():
    from headlab.run import check_params

    got = check_params("04_attention_sinks", {"pretrained": False, "n_prompts": 4}, "smoke")
    assert got == {"pretrained": False, "overrides": {"n_prompts": 4}}
    with pytest.raises(profiles.ProfileError, match=r"no parameter \['n_promts'\]"):
        check_params("04_attention_sinks", {"n_promts": 4}, "smoke")


def test_a_run_with_other_sizes_goes_to_its_own_folder():
    from headlab.run import check_params, run_folder

    assert run_folder("smoke", None) == "smoke"
    assert run_folder("smoke", {"grid": "full"}) == "full"
    assert run_folder("smoke", check_params("01_dormant_heads", {"out": "powered", "mc_per_kind": 50})) == "powered"
    assert profiles.resolve("01_dormant_heads", "smoke").out is None  # the stored default writes to smoke/


def test_papermill_override_changes_the_run_and_an_unknown_name_stops_it(tmp_path):
    """Plain papermill (no headlab runner): ``-p overrides '<json>'`` reaches resolve as text."""
    import nbformat
    import papermill as pm

    from headlab.run import KERNEL, _kernel_manager_class

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    params = nbformat.v4.new_code_cell('profile = "smoke"\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    body = 'from headlab.profiles import resolve\nP = resolve("00_headlab_tour", profile, overrides)\nprint("seed", P.seed)'
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    src, out = tmp_path / "t.ipynb", tmp_path / "o.ipynb"
    nbformat.write(nb, src)
    run = dict(kernel_name=KERNEL, kernel_manager_class=_kernel_manager_class(), progress_bar=False)
    pm.execute_notebook(str(src), str(out), parameters={"overrides": '{"seed": 7}'}, **run)
    assert "seed 7" in nbformat.read(out, 4).cells[-1].outputs[0]["text"]
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(src), str(out), parameters={"overrides": '{"sead": 7}'}, **run)
    assert e.value.ename == "ProfileError" and "unknown parameter(s) ['sead']" in e.value.evalue


def test_cli_errors_before_compute(capsys, monkeypatch):
    monkeypatch.setattr(profiles, "_gpu_available", lambda: False)
    assert main(["run", "--profile", "warp"]) == 2
    assert main(["run", "--profile", "smoke", "99_nope"]) == 2
    assert main(["run", "--profile", "gpu", "00_headlab_tour"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'warp'" in err and "unknown notebook" in err and "CUDA GPU" in err


def test_claims_cli_rebuilds_and_refuses_bad_input(capsys):
    assert main(["claims", "99_nope"]) == 2
    assert main(["claims", "00_headlab_tour", "--profile", "warp"]) == 2
    err = capsys.readouterr().err
    assert "unknown notebook" in err and "no committed run" in err
    assert main(["claims", "--glance"]) == 0 and "| notebook | profile |" in capsys.readouterr().out


def test_figure_save_is_atomic_and_keeps_last_good(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    df = pd.DataFrame({"x": [0, 1], "y": [1.0, 0.0]})
    png = figures.save(fig, df, "p", "smoke", "fig1")
    good = png.read_bytes()
    assert png.exists() and (tmp_path / "p/smoke/fig1.csv").read_text().startswith("x,y")

    class Boom(Exception):
        pass

    def broken_savefig(*a, **k):
        raise Boom()

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(Boom):
        figures.save(fig, None, "p", "smoke", "fig1")
    assert png.read_bytes() == good
    assert sorted(os.listdir(tmp_path / "p/smoke")) == ["fig1.csv", "fig1.png"]  # no temp files left


def test_runner_cleans_executed_notebooks():
    nb = {
        "metadata": {"papermill": {"duration": 1}, "kernelspec": {}},
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"tags": ["injected-parameters"]},
                "execution_count": 2,
                "outputs": [],
                "source": "",
            },
            {
                "cell_type": "code",
                "metadata": {"papermill": {"duration": 3}, "execution": {}},
                "execution_count": 7,
                "outputs": [],
                "source": "",
            },
        ],
    }
    out = run.clean(json.loads(json.dumps(nb)), drop_injected=True)
    assert "papermill" not in out["metadata"] and len(out["cells"]) == 1
    assert out["cells"][0]["metadata"] == {} and out["cells"][0]["execution_count"] == 1


def test_stored_notebooks_are_registered_and_have_parameters_cells():
    from headlab.paths import NOTEBOOKS_DIR

    stored = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert stored, "no notebooks stored"
    for name in stored:
        assert name in profiles.NOTEBOOKS, f"{name} is not registered in headlab.profiles.NOTEBOOKS"
        cells = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())["cells"]
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells)
        assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))


def test_run_knobs_are_parsed_and_checked_before_compute():
    from headlab.run import check_params, parse_params

    assert parse_params(["pretrained=false", 'parts=["ctx_sweep"]', "grid=full", "n=3"]) == {
        "pretrained": False,
        "parts": ["ctx_sweep"],
        "grid": "full",
        "n": 3,
    }
    with pytest.raises(ProfileError, match="NAME=VALUE"):
        parse_params(["pretrained"])
    check_params("04_attention_sinks", {"pretrained": False, "parts": ["variants"]})  # declared knobs pass
    with pytest.raises(ProfileError, match="no parameter \\['n_layers'\\]"):
        check_params("04_attention_sinks", {"n_layers": 2})


def test_gpu_rehearsal_keeps_the_gpu_lists_at_toy_sizes_on_cpu(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "_gpu_available", lambda: False)
    monkeypatch.setenv(profiles.REHEARSE_ENV, "1")
    for name, nb in profiles.NOTEBOOKS.items():
        assert set(nb.rehearse) <= set(nb.params["gpu"]), f"{name}: rehearsal sizes name unknown parameters"
        P = profiles.resolve(name, "gpu")
        gpu = nb.params["gpu"]
        assert P.device == "cpu" and P.profile == "gpu"
        for k, v in gpu.items():  # everything the rehearsal does not shrink is the gpu profile's own value
            if k not in nb.rehearse and k != "device":
                assert P[k] == v, (name, k)
    assert "REHEARSAL" in capsys.readouterr().out
    P = profiles.resolve("00_headlab_tour", "paper")  # paper: hub lists kept, no hub check, its own extras
    assert P.models == profiles.NOTEBOOKS["00_headlab_tour"].params["paper"]["models"] and P.zero_layer == 2
    P = profiles.resolve("05_moh", "gpu")
    assert P.vit_table6 == profiles.NOTEBOOKS["05_moh"].params["gpu"]["vit_table6"]  # the gpu variant lists
    monkeypatch.delenv(profiles.REHEARSE_ENV)
    with pytest.raises(ProfileError, match="needs a CUDA GPU"):
        profiles.resolve("05_moh", "gpu")


def test_rehearse_is_for_the_gpu_and_paper_profiles_only(capsys):
    assert main(["run", "--profile", "smoke", "--rehearse", "00_headlab_tour"]) == 2
    assert "--rehearse rehearses the gpu or paper profile" in capsys.readouterr().err
    assert os.environ.get(profiles.REHEARSE_ENV) is None


def test_cache_command_rejects_unknown_models(capsys):
    assert main(["cache", "llama-9000"]) == 2
    assert "unknown offline model 'llama-9000'" in capsys.readouterr().err


def test_notebook_knobs_are_not_shadowed_by_later_cells():
    """A knob that a later cell rebinds (``from headlab import models`` after ``models = None``) is
    silently ignored by papermill: every name of a parameters cell stays unbound after it."""
    import ast

    from headlab.paths import NOTEBOOKS_DIR

    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        i = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        knobs = {
            t.id
            for node in ast.parse("".join(cells[i]["source"])).body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert "profile" in knobs, path.name
        for c in cells[i + 1 :]:
            for node in ast.walk(ast.parse("".join(c["source"]))):
                bound = set()
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    bound = {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bound = {node.id}
                assert not bound & knobs, f"{path.name}: a cell rebinds the knob(s) {bound & knobs}"


@pytest.mark.slow
def test_replot_redraws_heads_cooperate_gpu_figures_from_their_committed_csvs(tmp_path, monkeypatch, capsys):
    """The H100 run's CSVs alone suffice to redraw its CSV-drawn figures; the CSVs are left untouched."""
    import shutil

    from headlab import paths
    from headlab.papers.heads_cooperate import figures as count01_figures

    src = paths.PUBLISHED_DIR / "heads_cooperate" / "gpu"
    dst = tmp_path / "heads_cooperate" / "gpu"
    dst.mkdir(parents=True)
    present = [n for n in count01_figures.FROM_CSV if (src / f"{n}.csv").exists()]  # older runs lack later figures
    assert len(present) >= 3
    for name in present:
        shutil.copy(src / f"{name}.csv", dst)
    monkeypatch.setattr(paths, "FIGURES_DIR", tmp_path)
    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path)
    before = {p.name: p.read_bytes() for p in dst.glob("*.csv")}
    assert main(["replot", "03_heads_cooperate", "--profile", "gpu"]) == 0
    assert {p.name for p in dst.glob("*.png")} == {f"{n}.png" for n in present}
    assert {p.name: p.read_bytes() for p in dst.glob("*.csv")} == before
    assert "redrawn:" in capsys.readouterr().out
    assert main(["replot", "03_heads_cooperate", "--profile", "paper"]) == 2  # nothing committed there
    assert "run the notebook at this profile first" in capsys.readouterr().err
    assert main(["replot", "99_nope", "--profile", "smoke"]) == 2
    assert "unknown notebook '99_nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_notebooks_run_on_a_local_socket_kernel_without_the_tcp_warning(tmp_path, capfd):
    """The runner's kernels use IPC sockets in a private folder, removed afterwards; parameters are injected."""
    import glob
    import tempfile

    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('profile:', profile)"),
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (headlab)", "language": "python", "name": "python3"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    before = set(glob.glob(f"{tempfile.gettempdir()}/headlab-kernel-*"))
    pm.execute_notebook(
        str(tmp_path / "t.ipynb"),
        str(tmp_path / "o.ipynb"),
        parameters={"profile": "gpu"},
        kernel_name=run.KERNEL,
        kernel_manager_class=run._kernel_manager_class(),
        progress_bar=False,
    )
    out = nbformat.read(tmp_path / "o.ipynb", as_version=4)
    assert "profile: gpu" in "".join(o.get("text", "") for o in out.cells[-1].outputs)
    assert "without encryption" not in capfd.readouterr().err
    assert set(glob.glob(f"{tempfile.gettempdir()}/headlab-kernel-*")) == before


@pytest.mark.parametrize("notebook", sorted(REPLOT))
@pytest.mark.parametrize("rows", [None, 3])
def test_every_csv_figure_draws_from_its_committed_csvs(notebook, rows):
    """Each CSV-drawn figure is a pure function of its committed table in every committed profile folder
    (and survives a three-row slice of it); the smoke folder has every one of them."""
    import importlib

    from headlab import paths
    from headlab.claims import saved
    from headlab.profiles import NOTEBOOKS

    mod = importlib.import_module(REPLOT[notebook])
    root = paths.PUBLISHED_DIR / NOTEBOOKS[notebook].paper
    cli_only = getattr(mod, "NOT_IN_NOTEBOOK", ())  # drawn by a command of their own (e.g. the sink pilot's)
    assert all((root / "smoke" / f"{name}.csv").exists() for name in mod.FROM_CSV if name not in cli_only)
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        for name, draw in mod.FROM_CSV.items():
            if saved(folder, name) is None:  # older gpu runs lack later figures
                continue
            d = pd.read_csv(saved(folder, name))  # plain or gzipped (large tables of committed runs)
            fig = draw(d if rows is None else d.head(rows))
            assert fig.axes, (folder, name)
            plt.close(fig)


def test_session_figure_draws_from_the_csv_it_saved(tmp_path, monkeypatch):
    """``S.figure(frame, draw)`` saves the frame as ``<draw name>.csv`` and draws the PNG from that CSV as read
    back (what ``replot`` redraws), in the run's figures folder."""
    from types import SimpleNamespace

    from headlab import session

    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path)
    S = object.__new__(session.Session)
    S.P = SimpleNamespace(paper="p", profile="smoke")
    seen = []

    def my_fig(d):
        seen.append(d)
        fig, ax = plt.subplots()
        ax.plot(d.x, d.y)
        return fig

    frame = pd.DataFrame({"x": [1, 2, 3], "y": [1 / 3, 2.0, 3.5], "label": ["a", "b", "c"]})
    png = S.figure(frame, my_fig)
    assert png == tmp_path / "p" / "smoke" / "my_fig.png" and png.exists()
    pd.testing.assert_frame_equal(seen[0], pd.read_csv(tmp_path / "p" / "smoke" / "my_fig.csv"))
    assert seen[0].y[0] == float("%.6g" % (1 / 3))  # drawn from the CSV's numbers, not the frame's
    plt.close("all")


def test_unknown_executor_is_one_line_before_any_compute(capsys):
    assert main(["run", "--executor", "ray", "00_headlab_tour"]) == 2
    err = capsys.readouterr().err
    assert "unknown executor 'ray'" in err and "submitit" in err
    assert os.environ.get("HEADLAB_EXECUTOR") is None


def test_a_rehearsal_leaves_the_environment_as_it_found_it(capsys, monkeypatch):
    """``run`` sets the rehearsal's variables for its own notebooks only: afterwards models.load of a hub id in
    the same process must not be redirected to a random twin."""
    keys = (profiles.REHEARSE_ENV, "HEADLAB_FIGURES", "HF_HUB_OFFLINE", "HEADLAB_EXECUTOR")
    for k in keys:
        monkeypatch.delenv(k, raising=False)
    assert main(["run", "--profile", "paper", "--rehearse", "--executor", "serial", "99_no_such_notebook"]) == 2
    assert "unknown notebook '99_no_such_notebook'" in capsys.readouterr().err
    for k in keys:
        assert os.environ.get(k) is None, k


def test_skip_part_leaves_the_tagged_cells_unexecuted_and_says_so(tmp_path):
    """``headlab run --skip-part NAME``: the cells tagged part-NAME run nowhere (no outputs), the rest do, and a note
    under the title names what was not run; an unknown part is a one-line error before any compute."""
    import nbformat
    import papermill as pm

    from headlab.run import KERNEL, _kernel_manager_class, check_skip, mark_skipped, parts_of

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("x = 1\nprint('setup')"),
        nbformat.v4.new_code_cell("x = 2\nprint('slow half')", metadata={"tags": ["part-slow"]}),
        nbformat.v4.new_code_cell("print('other half', x)", metadata={"tags": ["part-other"]}),
    ]
    assert parts_of(nb) == {"slow", "other"}
    marked = mark_skipped(json.loads(nbformat.writes(nb)), ["slow"])
    assert (
        marked["cells"][1]["id"] == "skipped-parts" and "part(s) slow (1 code cells" in marked["cells"][1]["source"][0]
    )
    src, out = tmp_path / "t.ipynb", tmp_path / "o.ipynb"
    src.write_text(json.dumps(marked))
    pm.execute_notebook(
        str(src), str(out), kernel_name=KERNEL, kernel_manager_class=_kernel_manager_class(), progress_bar=False
    )
    cells = nbformat.read(out, 4).cells
    texts = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in cells]
    assert texts[2:] == ["setup\n", "", "other half 1\n"]  # the skipped cell neither ran nor set x
    assert check_skip("02_dha_fusion", ["bytes"]) == ["bytes"] and check_skip("02_dha_fusion", None) == []
    with pytest.raises(ProfileError, match=r"02_dha_fusion: no part \['byte'\] to skip; its parts: bytes, smollm"):
        check_skip("02_dha_fusion", ["byte"])
