"""v1's pretraining dynamics on natural text (issue 23): dormant heads scored on the checkpoints of the sink pilot
(``attention_sinks.pilot``: a byte-level model pretrained on the big corpus with a fixed ⟨bos⟩), instead of the
Bigram-Backcopy toy of the notebook.

At every checkpoint, AHON-LN and AWFT are scored on two disjoint sets of held-out windows (A and B: the first
``2 n`` validation documents long enough, alternating) and flagged at the notebook's fixed thresholds. The saved
table keeps every (checkpoint, window, score) with its heads' states as a 0/1 string, so the claims can resample
windows and re-split the sets:

* **early** is judged against the model's own convergence, not an arbitrary horizon: the dormant fraction's plateau
  step (``dynamics.plateau_step``) against the step where the validation loss has made 90 % of its total drop;
* **switching** has a null: a head's majority state (dormant on more than half of a set's windows) changes between
  consecutive checkpoints more often than it differs between the two disjoint window sets at the same checkpoint.

    python -m headlab.papers.dormant_heads.natural      # after the pilot: writes figures/dormant_heads/cpu_pilot/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...data import ByteTokenizer, big_corpus
from ...paths import CACHE_DIR, FIGURES_DIR
from ...train import progress_bar
from .dynamics import model_scores
from .scores import SCORES
from .zeroing import flagged

NAMES = ("ahon_ln", "awft")
CONVERGED = 0.9  # the validation loss has converged once it has made this share of its total drop


def windows(n: int, ctx: int, corpus: Path | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``[2n, ctx]`` held-out windows (⟨bos⟩ + the first ``ctx - 1`` bytes of validation documents) and their set
    labels, alternating "A", "B"."""
    from ..attention_sinks.pilot import doc_start_windows

    val_t, val_off = big_corpus("val", "bytes", path=corpus)
    w = doc_start_windows(val_t, val_off, 2 * n, ctx - 1)
    x = torch.cat([torch.full((2 * n, 1), ByteTokenizer.bos_token_id), w], 1)
    return x, np.array(["A", "B"] * n)


def checkpoint_states(
    pilot_dir: Path, ckpt_dir: Path, taus: dict[str, float], n: int = 64, corpus=None
) -> pd.DataFrame:
    """One row per (checkpoint, window, score): step, set, window, score, dormant_frac and ``states`` (the
    ``[layer, head]`` flags, row-major, as a 0/1 string)."""
    from ..attention_sinks.pilot import PilotSpec
    from ..attention_sinks.training import VARIANTS, PretrainSpec, build_model

    meta = json.loads((pilot_dir / "pilot_params.json").read_text())
    spec = PilotSpec(**{k: meta[k] for k in PilotSpec.__dataclass_fields__})
    x, sets = windows(n, spec.ctx, corpus)
    ckpts = sorted(ckpt_dir.glob("step*.pt"))
    if not ckpts:
        raise FileNotFoundError(f"no step*.pt checkpoints in {ckpt_dir}: run the sink pilot first")
    rows = []
    for path in progress_bar(ckpts, "checkpoints"):
        model = build_model(PretrainSpec(spec.ctx, spec.batch * spec.ctx, 1, VARIANTS["bos_causal"], spec.model))
        model.load_state_dict(torch.load(path, map_location="cpu"))
        with torch.no_grad():
            sc = model_scores(model.eval(), x, NAMES)  # name -> [window, layer, head]
        for name in NAMES:
            st = flagged(sc[name], taus[name], SCORES[name].flag_high)
            for i in range(len(x)):
                rows.append(
                    {
                        "step": int(path.stem[4:]),
                        "set": sets[i],
                        "window": i,
                        "score": name,
                        "dormant_frac": float(st[i].mean()),
                        "states": "".join("1" if v else "0" for v in st[i].ravel()),
                    }
                )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- statistics for the claims
def state_array(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one score: ``S [checkpoint, window, head]`` bool, the steps and the windows' set labels."""
    steps = np.sort(d.step.unique())
    wins = np.sort(d.window.unique())
    sets = d.drop_duplicates("window").set_index("window").loc[wins, "set"].to_numpy()
    st = d.set_index(["step", "window"]).states
    S = np.array([[[c == "1" for c in st[s, w]] for w in wins] for s in steps])
    return S, steps, sets


def convergence_step(log: pd.DataFrame, share: float = CONVERGED) -> int:
    """The first evaluation step at which the validation loss has made ``share`` of its drop from step 0 to its
    minimum (the pilot's ``pilot_log.csv``)."""
    v = log.val_loss.to_numpy(float)
    target = v[0] - share * (v[0] - v.min())
    return int(log.step.to_numpy()[np.argmax(v <= target)])


def switch_minus_null(S: np.ndarray, in_a: np.ndarray, after: int = 0) -> tuple[float, float, float]:
    """Head-level switching against its sampling null, from ``S [checkpoint, window, head]``: a head's state in a
    window set is "dormant on more than half of the set's windows". ``switch``: share of (head, consecutive
    checkpoint pair from index ``after`` on) whose state in set A changes; ``null``: share of (head, checkpoint
    from ``after`` on) whose state differs between set A and set B. Returns (switch - null, switch, null)."""
    A = S[:, in_a].mean(1) > 0.5  # [checkpoint, head]
    B = S[:, ~in_a].mean(1) > 0.5
    switch = float((A[after + 1 :] != A[after:-1]).mean()) if len(A) > after + 1 else float("nan")
    null = float((A[after:] != B[after:]).mean())
    return switch - null, switch, null


def natural_table(d: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """The figure's tidy table (``figures.natural``): per score and checkpoint the % dormant in each window set, the
    head-level switch rate since the previous checkpoint (set A) and the A-vs-B disagreement, plus the loss."""
    rows = []
    for name, g in d.groupby("score", sort=False):
        S, steps, sets = state_array(g)
        in_a = sets == "A"
        A, B = S[:, in_a].mean(1) > 0.5, S[:, ~in_a].mean(1) > 0.5  # [checkpoint, head]
        for t, step in enumerate(steps):
            rows.append((step, name, "dormant", "set A", 100 * S[t, in_a].mean()))
            rows.append((step, name, "dormant", "set B", 100 * S[t, ~in_a].mean()))
            if t:
                rows.append((step, name, "switch", "switch since previous (set A)", 100 * (A[t] != A[t - 1]).mean()))
            rows.append((step, name, "switch", "null: set A ≠ set B", 100 * (A[t] != B[t]).mean()))
    rows += [(r.step, "", "loss", "validation", r.val_loss) for r in log.itertuples()]
    out = pd.DataFrame(rows, columns=["step", "score", "panel", "series", "value"])
    return out.assign(conv_step=convergence_step(log))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m headlab.papers.dormant_heads.natural", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--pilot", type=Path, default=FIGURES_DIR / "attention_sinks" / "cpu_pilot")
    ap.add_argument("--ckpt", type=Path, default=CACHE_DIR / "sink_pilot")
    ap.add_argument("--out", type=Path, default=FIGURES_DIR / "dormant_heads" / "cpu_pilot")
    ap.add_argument("--n", type=int, default=64, help="held-out windows per set (two disjoint sets)")
    ap.add_argument("--tau-ahon-ln", type=float, default=0.5)
    ap.add_argument("--tau-awft", type=float, default=0.5)
    a = ap.parse_args(argv)
    if not (a.pilot / "pilot_params.json").exists():
        ap.error(f"no pilot in {a.pilot}: run python -m headlab.papers.attention_sinks.pilot first")
    d = checkpoint_states(a.pilot, a.ckpt, {"ahon_ln": a.tau_ahon_ln, "awft": a.tau_awft}, a.n)
    a.out.mkdir(parents=True, exist_ok=True)
    d.to_csv(a.out / "natural_dynamics.csv.gz", index=False, float_format="%.5g")  # ~0.5 MB plain: stored gzipped
    log = pd.read_csv(a.pilot / "pilot_log.csv")[["step", "tokens_seen", "val_loss"]]
    log.to_csv(a.out / "natural_val_loss.csv", index=False, float_format="%.5g")
    params = {"tau_ahon_ln": a.tau_ahon_ln, "tau_awft": a.tau_awft, "n_per_set": a.n, "pilot": str(a.pilot.name)}
    (a.out / "natural_params.json").write_text(json.dumps(params, indent=1) + "\n")
    from ...figures import write_png
    from .figures import natural

    natural_table(d, log).to_csv(a.out / "natural.csv", index=False, float_format="%.5g")
    write_png(natural(pd.read_csv(a.out / "natural.csv")), a.out / "natural.png")
    print(d.groupby(["score", "step"]).dormant_frac.mean().unstack(0).round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
