"""Speed: dynamic zeroing against a plain forward, in A B B A quads."""

from __future__ import annotations

import pandas as pd
import torch

from ... import eval as ev
from ... import heads
from .scores import SCORES
from .zeroing import Selector

# --------------------------------------------------------------------------------------------
# speed: dynamic zeroing against a plain forward
# --------------------------------------------------------------------------------------------


def overhead(model, ids: torch.Tensor, taus: dict[str, float], pairs: int = 3) -> pd.DataFrame:
    """Time of the body forward with per-input zeroing by each score in ``taus`` (name -> threshold;
    scores computed in the same forward) over a plain forward, by the benchmark harness: ``pairs``
    interleaved A B B A quads after a warm-up; median ratio, IQR and 95 % interval of the median."""
    from ...bench import paired

    def plain():
        with torch.no_grad():
            ev.final_hidden(model, ids)

    def zeroed(name):
        def run():
            with (
                torch.no_grad(),
                heads.intervene(model, heads.zero_where(Selector(name, taus[name])), needs=SCORES[name].needs),
            ):
                ev.final_hidden(model, ids)

        return run

    rows = []
    for name in taus:
        r = paired(plain, zeroed(name), pairs)
        rows.append(
            {
                "score": name,
                "ratio": r["median"],
                "q25": r["q25"],
                "q75": r["q75"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "pairs": pairs,
                "plain_seconds": r["base_median_s"],
            }
        )
    return pd.DataFrame(rows)
