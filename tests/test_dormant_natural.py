"""C10 on natural-text checkpoints (dormant_heads.natural + rules_scores.c10n) on hand-made state tables."""

import numpy as np
import pandas as pd

from headlab.claims import Claims
from headlab.papers.dormant_heads import natural as N
from headlab.papers.dormant_heads.rules_scores import c10n


def _table(S: np.ndarray, steps, score="ahon_ln"):
    rows = []
    for t, step in enumerate(steps):
        for w in range(S.shape[1]):
            rows.append(
                {
                    "step": step,
                    "set": "AB"[w % 2],
                    "window": w,
                    "score": score,
                    "dormant_frac": S[t, w].mean(),
                    "states": "".join("1" if v else "0" for v in S[t, w]),
                }
            )
    return pd.DataFrame(rows)


def test_state_array_round_trips_and_convergence_step():
    rng = np.random.default_rng(0)
    S = rng.random((4, 6, 5)) < 0.3
    got, steps, sets = N.state_array(_table(S, [0, 10, 20, 30]))
    assert np.array_equal(got, S) and list(steps) == [0, 10, 20, 30] and list(sets) == list("ABABAB")
    log = pd.DataFrame({"step": [0, 10, 20, 30, 40], "val_loss": [5.0, 3.0, 2.2, 2.05, 2.0]})
    assert N.convergence_step(log) == 20  # 5 - 0.9 * 3 = 2.3: first reached at step 20


def test_switch_minus_null():
    # 2 heads, 4 windows (A, B, A, B), 3 checkpoints: head 0 flips every checkpoint in both sets, head 1 never
    S = np.zeros((3, 4, 2), bool)
    S[1, :, 0] = True
    d, switch, null = N.switch_minus_null(S, np.array([True, False, True, False]))
    assert (switch, null, d) == (0.5, 0.0, 0.5)
    S[:, 1, 1] = S[:, 3, 1] = True  # head 1 dormant in set B only: the sets disagree, no switching
    d, switch, null = N.switch_minus_null(S, np.array([True, False, True, False]))
    assert (switch, null) == (0.5, 0.5) and d == 0.0


def _folder(tmp_path, S, steps, losses):
    f = tmp_path / "cpu_pilot"
    f.mkdir()
    _table(S, steps).to_csv(f / "natural_dynamics.csv", index=False)
    pd.DataFrame({"step": steps, "val_loss": losses}).to_csv(f / "natural_val_loss.csv", index=False)
    return f


def test_c10n_verdicts(tmp_path):
    rng = np.random.default_rng(1)
    steps = list(range(0, 1200, 100))
    n_win, n_head = 40, 24
    # heads become dormant by step 200, then a third of them flip at every checkpoint in both sets alike
    S = np.zeros((len(steps), n_win, n_head), bool)
    for t in range(2, len(steps)):
        pattern = rng.random(n_head) < 0.5
        S[t] = pattern[None, :] & (rng.random((n_win, n_head)) < 0.95)
    losses = [5.0, 4.0, 3.5, 3.0, 2.7, 2.5, 2.3, 2.2, 2.1, 2.05, 2.02, 2.0]
    C = Claims("dormant_heads", "test")
    c10n(C, _folder(tmp_path, S, steps, losses), n_boot=200)
    r = next(r for r in C.rows if r.claim_id == "C10n")
    assert r.verdict == "reproduced", r.our_value
    # frozen states after emergence: no switching beyond the sets' disagreement
    S2 = np.zeros_like(S)
    S2[2:] = S[2][None]
    C2 = Claims("dormant_heads", "test")
    (tmp_path / "b").mkdir()
    c10n(C2, _folder(tmp_path / "b", S2, steps, losses), n_boot=200)
    r2 = next(r for r in C2.rows if r.claim_id == "C10n")
    assert r2.verdict == "partly" and "switch 0.0%" in r2.our_value
    C3 = Claims("dormant_heads", "test")
    c10n(C3, tmp_path / "absent")
    assert C3.rows[0].verdict == "not testable here"
