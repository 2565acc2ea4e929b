"""``python -m headlab lenses MODEL --texts TYPE[,TYPE] --out DIR``: every lens of one model, its tables and
figures in one folder (no notebook, no claims table)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import data, models
from ..figures import save, save_csv, write_png
from . import figures as F
from . import stats
from .probe import measure, texts


def check_args(model: str, types: list[str], attn: str = "eager"):
    """One-line errors before any compute: an unknown model or text type, a model that cannot run eager."""
    if attn != "eager":
        raise ValueError(f"the lenses read attention patterns: attn must be 'eager', not {attn!r}")
    models.validate_name(model)
    known = data.text_types()
    bad = [t for t in types if t not in known]
    if bad:
        raise ValueError(f"unknown text type(s) {bad}; the corpus has {known}")


def analyse(per_text, exact) -> dict:
    """Every derived frame, keyed by figure id (``head_means`` under ``lens_maps``)."""
    return {
        "lens_maps": stats.head_means(per_text),
        "lens_correlations": stats.correlations(per_text),
        "lens_prediction": (pred := stats.prediction(per_text, exact)),
        "lens_precision": pred,
        "lens_stability": stats.stability(per_text),
        "attribution_vs_exact": stats.attribution_table(per_text, exact),
    }


def run(model: str, out: Path, types: list[str], per_type: int = 2, T: int = 96, n_random: int = 12,
        n_dormant: int = 6, device: str = "cpu", attn: str = "eager") -> Path:  # fmt: skip
    check_args(model, types, attn)
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m, tok = models.load(model, device=device, attn="eager")
    tx = texts(tok, models.bos_for(model, tok), types, per_type, T)
    res = measure(m, model, tx, n_random=n_random, n_dormant=n_dormant)
    per_text = stats.with_dormant_share(res.per_text)
    frames = analyse(per_text, res.exact)
    per_text.to_csv(out / "lens_per_text.csv", index=False, float_format="%.5g")
    res.exact.to_csv(out / "exact_ablation.csv", index=False, float_format="%.5g")
    for fig_id, frame in frames.items():
        frame.to_csv(out / f"{fig_id}.csv", index=False, float_format="%.5g")
        write_png(F.FROM_CSV[fig_id](frame), out / f"{fig_id}.png")
    print(f"{model}: {len(tx.ids)} texts x {tx.ids.shape[1]} tokens, {len(res.exact) // len(tx.ids)} heads ablated "
          f"exactly; tables and figures in {out} ({time.time() - t0:.0f} s)")  # fmt: skip
    return out


__all__ = ["analyse", "check_args", "run", "save", "save_csv"]
