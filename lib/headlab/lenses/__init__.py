"""Five lenses on one model's heads (notebook 06): the dormant-heads scores, the attention-sink score, DHA's
redundancy (CKA with the nearest head), MoH's routers (query norm and the ‖z W_O‖ oracle) and causal ablation
(exact on a sample, attribution patching for every head), as one tidy per-(text, layer, head) table.

    from headlab import lenses
    tx = lenses.texts(tok, bos, types, per_type=2, T=96)
    m = lenses.measure(model, "smollm2-135m", tx)        # m.per_text, m.exact
    lenses.run("smollm2-135m", out_dir)                   # the CLI: tables and figures in one folder
"""

from .probe import LENS_COLUMNS, Measured, Texts, measure, texts
from .stats import LENSES, correlations, head_means, prediction, stability, with_dormant_share

__all__ = [
    "LENSES",
    "LENS_COLUMNS",
    "Measured",
    "Texts",
    "correlations",
    "head_means",
    "measure",
    "prediction",
    "stability",
    "texts",
    "with_dormant_share",
]
