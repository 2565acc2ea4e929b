"""MoH (Jin et al. 2024, arXiv 2410.11842): the claims table, computed from the CSVs notebook 05 saves.

Every row is computed from ``figures/moh/<profile>/*.csv`` alone (no model, no training). Units of
replication: test images (digits ViT), validation windows (byte LM, SmolLM2), timing repeats (speed).
All our runs at smoke use ONE training seed, so seed-to-seed variance is not measured: an interval over
images or windows says how sure we are about these trained models, not about the training recipe.

Rules (fixed before the numbers were looked at; see each function):

* accuracy claims: paired bootstrap over test images of the accuracy difference (MoH - MHA);
* C2 premise: the MHA byte LM must sit at least ``C2_PREMISE_NATS`` below the unigram byte entropy of
  the validation text, else the comparison of barely trained models is inconclusive;
* C5 (query-norm conversion of SmolLM2) is OUR hypothesis (notes [I]), not a paper claim;
* C6 needs at least ``MIN_SEEDS`` training seeds (a direction claim on saturated digits);
* speed rows (``speed``) go to ``table7_claims.csv``, not to the nbval-checked table: timings change
  from run to run and between machines.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from headlab.claims import Claims, Evidence, Published, bootstrap, compound, greater, less, read, seed_interval

PAPER = "moh"
V = "arXiv 2410.11842 / ICML 2025 camera-ready"
C2_PREMISE_NATS = 1.0  # the notebook's "barely trained" line, written before this module
MIN_SEEDS = 5  # C6: a direction claim is not judged on fewer training seeds
C1_TOL = {"MoH-88": 0.03, "MoH-75": 0.03, "MoH-50": 0.05}  # allowed accuracy drop below MHA (fraction)
C2_TOL = {"MoH-75": 0.08, "MoH-50": 0.15}  # allowed val-loss excess over MHA (nats/byte)
C4_BAND = (0.25, 1.75)  # routed-head load / (K/E)
C7_FLAT = 0.01  # accuracy range across shared shares (fraction)
C5_BOUND = 1.5  # query-norm ppl <= 1.5 x original (our bound)
T7_MASKED_FLOOR = 0.95
T7_GPU_SPEEDUP = 1.3

# ----------------------------------------------------------------------------------------- the paper's numbers
PUB = {
    "C1": Published("MoH-ViT within 0.1 pp of TransNeXt at 50-80 % heads (e.g. B-75 84.9 vs 84.8)", f"Table 1, {V}"),
    "C2": Published("MoH-LLM >= LLM at 50-75 % heads (e.g. B-75 47.8 vs 47.4 avg)", f"Table 3, {V}"),
    "C3": Published("head load varies with class / task", f"Fig. 3, {V}"),
    "C4": Published(
        "balanced routed heads with beta = 0.01",
        f"Sec. 3.2 / Eq. 6, {V}",
        "the [0.25, 1.75] x K/E band and l_aux/K <= 1.5 are our operationalisation",
    ),
    "C5": Published(
        "(none: our hypothesis)",
        "notes [I]; the paper has no step-0 random baseline",
        "our inference from Table 4 / Fig. 2, not a claim of the paper",
    ),
    "C6": Published("75.6 < 78.3 (ViT-S)", f"Table 5, {V}"),
    "C7": Published("range 0.2 pp (78.4-78.6)", f"Table 6, {V}"),
    "C8": Published("shared > routed", f"Figs. C/E text, {V}"),
    "C9": Published("MoH < MHA (4/4): ViT 0.5159/0.0411 vs 0.3978/0.0165", f"Table B, {V}"),
    "C10": Published("> 95 % in 10B tokens", f"Fig. 2, {V}"),
    "T7-gpu": Published(
        ">= 1.3x",
        "issue goal (ours), cf. Table 7 0.225 vs 0.360 ms",
        "our target for a GPU skipping kernel, not the paper's number",
    ),
    "T7-masked": Published(
        ">= 0.95",
        "notes [C]: the released code computes every head",
        "our reading of the released code, not a number of the paper",
    ),
    "T7-skip<masked": Published("skip < masked", "issue goal (ours)"),
    "T7-skip50": Published("0.63 (0.225 / 0.360 ms at 256)", f"Table 7, {V}"),
    "P1": Published("84.9 / 84.7 / 84.7 / 84.6", f"Table 1, {V}"),
    "P2": Published("2.94", f"Table 2, {V}"),
    "P3": Published("47.8", f"Table 3, {V}"),
    "P4": Published("64.0", f"Table 4, {V}"),
    "P4g": Published("64.8", f"Table G, {V}"),
    "P5": Published("75.6 / 78.3 / 78.6", f"Table 5, {V}"),
    "P6": Published("78.4-78.6", f"Table 6, {V}"),
    "P7": Published("0.360 vs 0.225", f"Table 7, {V}"),
    "P8": Published("0.5159/0.0411 vs 0.3978/0.0165", f"Table B, {V}"),
}
# quoted benchmark tables (Tables 3, 4 and G; arXiv 2410.11842 / ICML 2025; arithmetic self-checks S9a-c)
PAPER_TABLE4 = {  # MoH-LLaMA3-8B vs LLaMA3-8B, 14 benchmarks: (LLaMA3-8B, MoH-LLaMA3-8B)
    "MMLU": (65.2, 65.8),
    "CEVAL": (52.3, 61.5),
    "CMMLU": (50.7, 64.4),
    "GSM8K": (49.5, 56.9),
    "TruthfulQA": (35.4, 44.0),
    "HellaSwag": (81.9, 80.1),
    "LogiQA": (30.0, 30.3),
    "BoolQ": (83.9, 84.0),
    "LAMBADA": (75.5, 76.4),
    "SciQ": (94.0, 92.2),
    "PIQA": (81.0, 78.8),
    "WinoGrande": (72.5, 72.9),
    "NQ": (31.5, 28.3),
    "ARC-C": (59.0, 60.1),
}
PAPER_TABLE4_AVG = (61.6, 64.0)
PAPER_TABLEG = {  # MoH-LLaMA3-8B vs the stage-1 (continued-pretraining, still MHA) model
    "MMLU": (66.2, 65.8),
    "CMMLU": (66.0, 64.4),
    "NQ": (28.1, 28.3),
    "GSM8K": (58.6, 56.9),
    "TruthfulQA": (41.9, 44.0),
    "HellaSwag": (79.4, 80.1),
    "LogiQA": (30.4, 30.3),
    "BoolQ": (85.1, 84.0),
    "LAMBADA": (75.8, 76.4),
    "SciQ": (92.2, 92.2),
    "PIQA": (79.1, 78.8),
    "WinoGrande": (73.0, 72.9),
    "ARC-E": (70.9, 72.5),
    "ARC-C": (59.6, 60.1),
}
PAPER_TABLEG_AVG = (64.7, 64.8)
PAPER_TABLE3 = {  # LLMs from scratch: SciQ, PIQA, WinoGrande, OBQA, LogiQA, TruthfulQA -> printed average
    "LLM-S 100B": ([63.0, 63.1, 51.1, 27.4, 26.9, 31.6], 43.9),
    "MoH-LLM-S-75": ([64.7, 62.0, 50.6, 28.8, 26.4, 35.2], 44.6),
    "MoH-LLM-S-50": ([67.0, 62.2, 51.5, 29.2, 26.7, 35.6], 45.4),
    "LLM-B 100B": ([73.1, 69.7, 52.0, 31.8, 28.4, 29.5], 47.4),
    "MoH-LLM-B-75": ([74.7, 69.2, 52.8, 30.0, 28.1, 32.2], 47.8),
    "MoH-LLM-B-50": ([75.2, 67.0, 52.0, 29.0, 26.9, 32.8], 47.2),
    "LLM-B 200B": ([73.1, 70.3, 53.3, 32.4, 29.0, 29.5], 47.9),
    "MoH-LLM-B-75 200B": ([76.0, 69.2, 52.7, 30.4, 29.8, 32.6], 48.5),
    "MoH-LLM-B-50 200B": ([75.6, 66.9, 53.5, 29.4, 26.7, 32.7], 47.5),
}
# the released configurations' activated fraction as the paper states it (Table 1 / 2 names)
PAPER_RELEASED = {
    "MoH-ViT-B-75": 0.75,
    "MoH-ViT-B-50": 0.5,
    "MoH-ViT-S-80": 0.7995,
    "MoH-ViT-S-75": 0.7529,
    "MoH-DiT-XL/2-90": 0.8996,
    "MoH-DiT-XL/2-75": 0.75,
}


def _bound(v: float) -> str:
    """Rounding-level numbers: order of magnitude only (stable across machines)."""
    return "0" if v == 0 else f"< 1e{int(np.ceil(np.log10(abs(v))))}"


def _opt(folder: Path, name: str) -> pd.DataFrame | None:
    p = Path(folder) / f"{name}.csv"
    return pd.read_csv(p) if p.exists() else None


# ------------------------------------------------------------------------------------------------- self-checks
def add_checks(C: Claims, folder: Path) -> None:
    sc = read(folder, "selfchecks").set_index("id")
    val = sc["value"].astype(float)
    C.check(
        "S1",
        "every token activates exactly h_s + K heads in every MoH layer",
        val["active_counts"] == 1,
        str(sc.loc["active_counts", "detail"]),
        expected="exact",
    )
    rel = {k: round(float(val.get(f"released {k}", math.nan)), 4) for k in PAPER_RELEASED}  # moh.activated_fraction
    C.check(
        "S2",
        "activated % of the released configs (head-count weighted over layers, always-on layers included)",
        all(abs(rel[k] - v) < 5e-5 for k, v in PAPER_RELEASED.items()),
        "/".join(f"{rel[k]:g}" for k in PAPER_RELEASED),
        expected="/".join(f"{v:g}" for v in PAPER_RELEASED.values()),
    )
    C.check(
        "S3",
        "code-convention gate sums: routed = K*a1, shared = h_s*a0, a0 + a1 = 2 (trained ViT, max error)",
        val["gate_sums"] < 1e-5,
        _bound(val["gate_sums"]),
        expected="exact",
    )
    d = max(val["dense"], val["two_stage"])
    C.check(
        "S4",
        "dense router, and two-stage with K = E and zero routers, equal MHA (max |diff|)",
        d <= 1e-6,
        _bound(d),
        expected="<= 1e-6",
    )
    C.check(
        "S4b",
        "the trained MHA LM's weights in MoHAttention(dense) give the same logits (max |diff|)",
        val["mha_weights_dense"] <= 1e-5,
        _bound(val["mha_weights_dense"]),
        expected="<= 1e-5",
    )
    bc, bp = val["balance_code"], val["balance_paper"]
    C.check(
        "S5",
        "balance loss at uniform scores and perfect balance: code scale = K (4), paper scale = K/E (0.667)",
        abs(bc - 4) < 1e-6 and abs(bp - 4 / 6) < 1e-6,
        f"{bc:.4g} / {bp:.4g}",
        expected="4 / 0.667",
    )
    w = max(val["skip_vit"], val["skip_lm"], val["masked_skip"])
    C.check(
        "S6",
        "masked and compute-skipping modes agree (trained ViT MoH-75, LM MoH-50, random layers; fp32 max |diff|)",
        w <= 1e-5,
        _bound(w),
        expected="<= 1e-5",
    )
    C.check(
        "S7",
        "K = 1 with renormalisation: the task loss gives W_r no gradient (max |grad|, float rounding)",
        val["k1_grad"] < 1e-5,
        _bound(val["k1_grad"]),
        expected="0",
    )
    C.check(
        "S8",
        "query-norm routing selects the same heads before and after RoPE (tokens that differ)",
        val["qnorm_rope"] == 0,
        str(int(val["qnorm_rope"])),
        expected="0",
    )
    for cid, name, tab, avg in (
        ("S9a", "4", PAPER_TABLE4, PAPER_TABLE4_AVG),
        ("S9b", "G", PAPER_TABLEG, PAPER_TABLEG_AVG),
    ):
        mine = tuple(round(float(np.mean([v[i] for v in tab.values()])), 2) for i in (0, 1))
        C.check(
            cid,
            f"paper arithmetic: Table {name} averages (14 tasks, MHA / MoH)",
            all(abs(m - a) <= 0.05 for m, a in zip(mine, avg, strict=True)),
            f"{mine[0]} / {mine[1]}",
            expected=f"{avg[0]} / {avg[1]}",
        )
    t3 = {k: round(float(np.mean(v)), 2) for k, (v, _) in PAPER_TABLE3.items()}
    worst = max(abs(t3[k] - p) for k, (_, p) in PAPER_TABLE3.items())
    C.check(
        "S9c",
        "paper arithmetic: Table 3 averages as printed (9 rows, +-0.05)",
        worst <= 0.05 + 1e-9,
        f"max |diff| {worst:.3f}",
        expected="as printed",
    )


# ------------------------------------------------------------------------------------------------- ViT accuracy
def image_matrix(img: pd.DataFrame, variants, seed=None) -> np.ndarray:
    """[images, variants] 0/1 correctness of one seed (the first if ``seed`` is None)."""
    seed = img.seed.min() if seed is None else seed
    p = img[img.seed == seed].pivot(index="image", columns="variant", values="correct")
    return p[list(variants)].to_numpy(dtype=float)


def paired_diff(img: pd.DataFrame, a: str, b: str):
    """Accuracy of ``a`` minus ``b`` on the same test images: (est, lo, hi, n), bootstrap over images."""
    m = image_matrix(img, [a, b])
    return bootstrap(m[:, 0] - m[:, 1])


def c1_evidence(img: pd.DataFrame, tol=C1_TOL) -> Evidence:
    parts = {
        n: greater(
            "MoH - MHA test accuracy",
            paired_diff(img, n, "MHA"),
            "test images",
            -t,
            f"reproduced if the paired 95% interval lies above -{t:g} (non-inferior); not if at or below",
        )
        for n, t in tol.items()
        if n in set(img.variant)
    }
    return compound(
        parts, "every budget non-inferior: paired bootstrap over test images of MoH - MHA accuracy above -margin"
    )


def c7_evidence(img: pd.DataFrame, variants, flat=C7_FLAT) -> Evidence:
    m = image_matrix(img, variants)

    def stat(x):
        return float(np.ptp(x.mean(0)))

    return less(
        "range of test accuracy across shared shares",
        bootstrap(m, stat),
        "test images",
        flat,
        f"reproduced if the 95% bootstrap interval (over test images) of the range lies below {flat:g}; not if at or above",
    )


def add_c6(C: Claims, img: pd.DataFrame, vit_seeds: int, min_seeds: int = MIN_SEEDS) -> None:
    """Table 5 direction (shared heads help). Rule: judged only with >= ``min_seeds`` training seeds
    (seed mean of the paired per-seed differences, t-interval above 0); below that, inconclusive."""
    no_sh, sh = "MoH-75 no shared, no two-stage", "MoH-75 no two-stage"
    acc = img[img.seed == img.seed.min()].groupby("variant").correct.mean()
    d6 = paired_diff(img, sh, no_sh)
    st6 = f"Table 5 direction: shared heads help (no-shared < with shared), {vit_seeds} seed(s)"
    ours6 = f"{acc[no_sh]:.3f} vs {acc[sh]:.3f}; paired diff {d6[0]:+.3f} [{d6[1]:+.3f}, {d6[2]:+.3f}] over images"
    if vit_seeds < min_seeds:
        C.inconclusive(
            "C6",
            st6,
            PUB["C6"],
            ours6,
            f"rule: a direction claim on saturated digits is judged only with >= {min_seeds} training seeds "
            f"(seed variance must be measured); this run has {vit_seeds}",
            statistic="with-shared - no-shared test accuracy (first seed, paired over images)",
            n=d6[3],
            unit="test images",
            rule=f">= {min_seeds} seeds, then the seed interval of the difference above 0",
        )
    else:
        per_seed = [paired_diff(img[img.seed == s], sh, no_sh)[0] for s in sorted(set(img.seed))]
        C.add(
            "C6",
            st6,
            PUB["C6"],
            ours6,
            greater("with-shared - no-shared test accuracy (mean over seeds)", seed_interval(per_seed), "seeds", 0.0),
        )


# ------------------------------------------------------------------------------------------------------ byte LM
def lm_premise(unigram: float, mha_loss: float, margin: float = C2_PREMISE_NATS) -> bool:
    return unigram - mha_loss >= margin


def c2_evidence(win: pd.DataFrame, tol=C2_TOL) -> Evidence:
    seed = win.seed.min()
    w = win[win.seed == seed].pivot_table(index=["domain", "window"], columns="variant", values="val_loss")
    parts = {
        n: less(
            "MoH - MHA validation loss (nats/byte)",
            bootstrap((w[n] - w["MHA"]).to_numpy()),
            "windows",
            t,
            f"reproduced if the paired 95% interval lies below +{t:g} nats; not if at or above",
        )
        for n, t in tol.items()
        if n in w
    }
    return compound(
        parts, "every budget non-inferior: paired bootstrap over validation windows of MoH - MHA loss below +margin"
    )


# ---------------------------------------------------------------------------------------------------- routing
def _onehot(labels: np.ndarray, uniq) -> np.ndarray:
    return (np.asarray(labels)[:, None] == np.asarray(uniq)[None, :]).astype(float)  # [units, labels]


def tv_between(sel: np.ndarray, labels: np.ndarray, uniq=None, onehot: np.ndarray | None = None) -> float:
    """Mean pairwise total-variation distance between the labels' routed-load vectors."""
    uniq = pd.unique(labels) if uniq is None else uniq
    loads = (_onehot(labels, uniq) if onehot is None else onehot).T @ sel
    loads = loads / loads.sum(1, keepdims=True)
    i, j = np.triu_indices(len(uniq), 1)
    return float(0.5 * np.abs(loads[i] - loads[j]).sum(1).mean())


def _strata(labels: np.ndarray, uniq, n_boot: int, seed: int = 0) -> np.ndarray:
    """[n_boot, units] bootstrap indices that resample units within each label (label sizes fixed)."""
    groups = [np.flatnonzero(labels == u) for u in uniq]
    order = np.concatenate(groups)
    size = np.concatenate([[len(g)] * len(g) for g in groups])
    start = np.concatenate(
        [[o] * len(g) for g, o in zip(groups, np.cumsum([0] + [len(g) for g in groups[:-1]]), strict=True)]
    )
    u = np.random.default_rng(seed).random((n_boot, len(order)))
    return order[start + (u * size).astype(int)]


UNIT_NAMES = {"ViT": "test images", "LM": "LM windows"}  # the unit each family's intervals resample


def unit_name(family) -> str:
    """What one unit of a family is: a ViT test image or an LM eval window."""
    return next((v for k, v in UNIT_NAMES.items() if str(family).startswith(k)), "units")


def c3_evidence(units: pd.DataFrame, n_perm: int = 200, seed: int = 0, n_boot: int = 1000) -> Evidence:
    """Routing depends on the category: the between-category TV of the routed loads (last layer), with a
    95% bootstrap interval over units (images/windows, resampled within each category), must lie above
    the 95th percentile of its label-permutation null."""
    hs = int(units.h_s.iloc[0])
    cols = [c for c in units.columns if c.startswith("sel_")][hs:]
    sel = units[cols].to_numpy(dtype=float)
    labels = units.label.astype(str).to_numpy()
    uniq = pd.unique(labels)
    rng = np.random.default_rng(seed)
    null = np.array([tv_between(sel, rng.permutation(labels), uniq) for _ in range(n_perm)])
    thr = float(np.quantile(null, 0.95))
    O = _onehot(labels, uniq)
    boots = [tv_between(sel[idx], None, uniq, O[idx]) for idx in _strata(labels, uniq, n_boot, seed)]
    est = tv_between(sel, labels, uniq)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return greater(
        "between-category TV of routed loads (last layer)",
        (est, lo, hi, len(units)),
        unit_name(units.family.iloc[0]) if "family" in units else "units",
        thr,
        f"reproduced if the 95% bootstrap interval (units resampled within category) lies above the "
        f"permutation null's 95th percentile ({thr:.3f}); not if at or below",
    )


def c4_evidence(ru: pd.DataFrame, band=C4_BAND, n_boot: int = 500) -> Evidence:
    """Every routed head in every layer and run has load / (K/E) inside ``band``: the smallest and the
    largest ratio over heads, bootstrapped over units (images / windows) per family."""
    parts = {}
    for fam, g in ru.groupby("family", sort=False):
        keys = list(g.groupby(["variant", "seed", "layer"], sort=False))
        units = sorted(set(g.unit))
        mats = []  # [units, heads] per (variant, seed, layer): selection counts, tokens
        for _, d in keys:
            d = d.set_index("unit").loc[units]
            hs, K = int(d.h_s.iloc[0]), int(d.K.iloc[0])
            cols = [c for c in d.columns if c.startswith("sel_")]
            E = len(cols) - hs
            mats.append((d[cols[hs:]].to_numpy(dtype=float), d.tokens.to_numpy(dtype=float), K / E))
        X = np.concatenate([np.concatenate([s, t[:, None]], 1) for s, t, _ in mats], 1)
        split = np.cumsum([m[0].shape[1] + 1 for m in mats])[:-1]

        def ratios(x, split=split, mats=mats):  # this family's blocks (used within this iteration)
            out = []
            for blk, (_, _, ke) in zip(np.split(x, split, axis=1), mats, strict=True):
                out.append(blk[:, :-1].sum(0) / blk[:, -1].sum() / ke)
            return np.concatenate(out)

        def lo_stat(x, ratios=ratios):
            return float(ratios(x).min())

        def hi_stat(x, ratios=ratios):
            return float(ratios(x).max())

        parts[f"{fam} min"] = greater(
            "smallest routed-head load / (K/E)",
            bootstrap(X, lo_stat, n_boot),
            unit_name(fam),
            band[0],
            f"reproduced if the 95% interval lies above {band[0]:g}; not if at or below",
        )
        parts[f"{fam} max"] = less(
            "largest routed-head load / (K/E)",
            bootstrap(X, hi_stat, n_boot),
            unit_name(fam),
            band[1],
            f"reproduced if the 95% interval lies below {band[1]:g}; not if at or above",
        )
    return compound(
        parts,
        f"every routed head's load / (K/E) inside [{band[0]:g}, {band[1]:g}] in every layer and run "
        f"(min and max over heads, bootstrap over images / windows)",
    )


def spread_diff(x: np.ndarray, labels: np.ndarray, hs: int, uniq, onehot: np.ndarray | None = None) -> float:
    """Across-category SD of each head's mean gate, averaged per group: shared minus routed.
    ``x`` = [units, 2h]: gate sums then selection counts per head."""
    h = x.shape[1] // 2
    tot = (_onehot(labels, uniq) if onehot is None else onehot).T @ x  # [labels, 2h]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = tot[:, :h] / tot[:, h:]  # a routed head no unit of a label selected: NaN, left out
        sd = np.nanstd(means, axis=0, ddof=1)
        return float(np.nanmean(sd[:hs]) - np.nanmean(sd[hs:]))


def c8_evidence(su: pd.DataFrame, n_boot: int = 1000) -> Evidence:
    parts = {}
    for fam, d in su.groupby("family", sort=False):
        hs = int(d.h_s.iloc[0])
        h = len([c for c in d.columns if c.startswith("gsum_")])
        x = np.concatenate(
            [d[[f"gsum_{j}" for j in range(h)]].to_numpy(float), d[[f"sel_{j}" for j in range(h)]].to_numpy(float)], 1
        )
        labels = d.label.astype(str).to_numpy()
        uniq = pd.unique(labels)
        O = _onehot(labels, uniq)
        boots = [spread_diff(x[idx], None, hs, uniq, O[idx]) for idx in _strata(labels, uniq, n_boot)]
        lo, hi = np.nanquantile(boots, [0.025, 0.975])
        parts[fam] = greater(
            "shared minus routed across-category SD of mean gate",
            (spread_diff(x, labels, hs, uniq), lo, hi, len(d)),
            unit_name(fam),
            0.0,
            "reproduced if the 95% bootstrap interval (units resampled within category) "
            "lies above 0; not if at or below",
        )
    return compound(parts)


def c9_evidence(red: pd.DataFrame) -> Evidence:
    return compound(
        c9_parts(red), "MoH less redundant on every measure and model: paired bootstrap over test images / windows"
    )


def c9_parts(red: pd.DataFrame) -> dict[str, Evidence]:
    parts = {}
    for fam, d in red.groupby("model", sort=False):
        d = d[d.seed == d.seed.min()]
        for col, short in (("pattern_similarity", "pattern"), ("output_abs_cosine", "|cos|")):
            p = d.pivot(index="unit", columns="variant", values=col)
            diff = (p["MoH-75"] - p["MHA"]).dropna().to_numpy()
            parts[f"{fam} {short}"] = less(
                f"MoH - MHA {col} (per unit)",
                bootstrap(diff),
                unit_name(fam),
                0.0,
                "reproduced if the paired 95% interval lies below 0; not if at or above",
            )
    return parts


# ------------------------------------------------------------------------------------------------------ SmolLM2
def c5_evidence(w: pd.DataFrame, budget: str, bound: float = C5_BOUND) -> Evidence:
    """Per evaluation window: query-norm < mean random < inverse, and query-norm NLL <= original + ln(bound)."""
    orig = w[w.router == "original"].set_index("window").nll
    g = w[w.budget == budget]
    qn = g[g.router == "query_norm"].set_index("window").nll
    rnd = g[g.router == "random"].groupby("window").nll.mean()
    inv = g[g.router == "inverse"].set_index("window").nll
    r = "reproduced if the paired 95% interval (over windows) lies below 0; not if at or above"
    parts = {
        "qn - random": less("query-norm - mean-random NLL (nats)", bootstrap((qn - rnd).to_numpy()), "windows", 0.0, r),
        "random - inverse": less(
            "mean-random - inverse NLL (nats)", bootstrap((rnd - inv).to_numpy()), "windows", 0.0, r
        ),
        "qn vs 1.5 x orig": less(
            f"query-norm NLL - original NLL - ln {bound:g}",
            bootstrap((qn - orig - math.log(bound)).to_numpy()),
            "windows",
            0.0,
            r,
        ),
    }
    return compound(
        parts, "ordering query-norm < random < inverse and query-norm ppl <= 1.5 x original, each paired over windows"
    )


# -------------------------------------------------------------------------------------------------------- speed
def speed_ratio(
    reps: pd.DataFrame, seq: int, num: tuple[str, str], den: tuple[str, str] = ("MHA", "dense"), n_boot: int = 1000
):
    """Median over repeats of time(num) / time(den) in the same round, bootstrap over repeats."""
    d = reps[reps.seq == seq].set_index(["variant", "mode", "repeat"]).seconds.sort_index()
    a, b = d.loc[num], d.loc[den]
    return bootstrap((a / b).to_numpy(), np.median, n_boot)


def speed(folder: Path, profile: str) -> Claims:
    """Timing rows (machine-dependent, change run to run): ``table7_claims.csv``, outside the checked table."""
    C = Claims(PAPER, profile)
    reps = _opt(folder, "table7_repeats")
    if reps is None:
        for cid, st in (
            ("T7-masked", "masked MoH is not faster than MHA"),
            ("T7-skip<masked", "skipping MoH faster than masked"),
            ("T7-skip50", "skipping MoH at 50 % heads faster than MHA"),
        ):
            C.untestable(
                cid, st, PUB[cid], "this run saved no per-repeat times (table7_repeats.csv)", kind="hypothesis"
            )
        return C
    t7 = read(folder, "table7")
    seqs = sorted(set(reps.seq))
    names = [n for n in pd.unique(t7.variant) if n != "MHA"]
    parts = {
        f"{n} {s}": greater(
            "time masked / MHA (median over repeats)",
            speed_ratio(reps, s, (n, "masked")),
            "repeats",
            T7_MASKED_FLOOR,
            f"reproduced if the 95% interval lies above {T7_MASKED_FLOOR:g}",
        )
        for n in names
        for s in seqs
    }
    C.add(
        "T7-masked",
        "masked MoH (released code) is not faster than MHA: time >= 0.95 x MHA, every length and budget",
        PUB["T7-masked"],
        f"{len(parts)} cells",
        compound(parts),
        kind="hypothesis",
    )
    parts = {
        f"{n} {s}": less(
            "time skip / masked (median over repeats)",
            speed_ratio(reps, s, (n, "skip"), (n, "masked")),
            "repeats",
            1.0,
            "reproduced if the 95% interval lies below 1",
        )
        for n in names
        for s in seqs
    }
    C.add(
        "T7-skip<masked",
        "skipping MoH is faster than masked MoH everywhere (issue goal)",
        PUB["T7-skip<masked"],
        f"{len(parts)} cells",
        compound(parts),
        kind="hypothesis",
    )
    act = t7.drop_duplicates("variant").set_index("variant").activated
    half = [n for n in names if abs(act[n] - 0.5) < 1e-9]
    if half:
        parts = {
            str(s): less(
                "time skip / MHA (median over repeats)",
                speed_ratio(reps, s, (half[0], "skip")),
                "repeats",
                1.0,
                "reproduced if the 95% interval lies below 1",
            )
            for s in seqs
        }
        C.add(
            "T7-skip50",
            "skipping MoH at 50 % heads is faster than MHA at every length timed (paper Table 7 ratio 0.63 at 256)",
            PUB["T7-skip50"],
            f"{len(parts)} lengths",
            compound(parts),
            kind="paper",
            note="paper protocol differs (all matmuls sparse, MHA included); machine-dependent",
        )
    return C


# -------------------------------------------------------------------------------------------------------- build
def build(folder: Path, profile: str) -> Claims:
    folder = Path(folder)
    C = Claims(PAPER, profile)
    add_checks(C, folder)
    rp = read(folder, "run_params").iloc[0]
    n_img, vit_seeds, lm_seeds = int(rp.test_images), int(rp.vit_seeds), int(rp.lm_seeds)
    one_seed = f"{vit_seeds} training seed(s): seed-to-seed variance is not measured by this interval"

    # --- C1: non-inferiority of MoH-ViT at each budget (Table 1)
    img = read(folder, "vit_images")
    acc = img[img.seed == img.seed.min()].groupby("variant").correct.mean()
    t1 = read(folder, "table1")
    a1 = t1[t1.seed == t1.seed.min()].set_index("variant").test_acc
    C.check(
        "S10",
        "per-image correctness reproduces the logged test accuracy of every ViT run (table1)",
        all(abs(acc[v] - a1[v]) < 1e-4 for v in a1.index),
        f"max |diff| {max(abs(acc[v] - a1[v]) for v in a1.index):.1g}",
    )
    C.add(
        "C1",
        "digits ViT: MoH-88 and MoH-75 >= MHA - 3 pp, MoH-50 >= MHA - 5 pp (test accuracy, paired over images)",
        PUB["C1"],
        f"MHA {acc['MHA']:.3f}, " + ", ".join(f"{n[4:]} {acc[n]:.3f}" for n in C1_TOL if n in acc),
        c1_evidence(img),
        note=f"{one_seed}; 1 test image = {100 / n_img:.2f} pp",
    )

    # --- C2: byte LM non-inferiority, if the MHA model trained past the unigram baseline
    t3 = read(folder, "table3")
    ll = t3[(t3.domain == "all") & (t3.seed == t3.seed.min())].set_index("variant").val_loss
    uni = float(rp.unigram_entropy)
    ours2 = f"MHA {ll['MHA']:.3f}, 75 {ll['MoH-75']:.3f}, 50 {ll['MoH-50']:.3f}; unigram {uni:.2f}"
    st2 = "byte LM: MoH-75 <= MHA + 0.08 and MoH-50 <= MHA + 0.15 nats (validation, equal steps, paired over windows)"
    if not lm_premise(uni, ll["MHA"]):
        C.inconclusive(
            "C2",
            st2,
            PUB["C2"],
            ours2,
            f"premise failed: MHA is {uni - ll['MHA']:.2f} nats below the unigram byte entropy {uni:.2f} after "
            f"{int(rp.lm_steps)} steps; the rule needs >= {C2_PREMISE_NATS:g} (a model trained clearly past "
            f"unigram) before a MoH/MHA gap says anything about capacity rather than optimisation speed",
            statistic="unigram entropy - MHA validation loss (nats/byte)",
            n=1,
            unit="premise",
            rule=f"premise: MHA >= {C2_PREMISE_NATS:g} nats below unigram; then paired bootstrap over windows",
        )
    else:
        C.add(
            "C2",
            st2,
            PUB["C2"],
            ours2,
            c2_evidence(read(folder, "lm_windows")),
            note=f"{lm_seeds} training seed(s): seed variance not measured; premise held "
            f"({uni - ll['MHA']:.2f} nats below unigram)",
        )

    # --- C3: routing depends on the category (last layer, MoH-75 seed 0)
    ru = read(folder, "routing_units")
    n_perm = int(rp.n_perm)
    for cid, fam, tag in (("C3a", "ViT", "ViT, digit classes"), ("C3b", "LM", "LM, text types")):
        g = ru[(ru.family == fam) & (ru.variant == "MoH-75")]
        g = g[(g.seed == g.seed.min()) & (g.layer == g.layer.max())]
        e = c3_evidence(g, n_perm)
        C.add(
            cid,
            f"routing depends on the category ({tag}, last layer): between-category TV above its permutation null",
            PUB["C3"],
            f"TV {e.estimate:.3f}",
            e,
            note="one trained model; units resampled within category",
        )

    # --- C4: balance
    e4 = c4_evidence(ru)
    bal = read(folder, "balance")
    last = bal[bal.step == bal.groupby(["model", "seed"]).step.transform("max")]
    laux = float(last[last.model.str.contains("MoH-75|MoH-50") & ~last.model.str.contains("beta=0")].laux_over_K.max())
    C.add(
        "C4",
        "with beta = 0.01 every routed head's load is within [0.25, 1.75] x K/E in every layer and run",
        PUB["C4"],
        f"final l_aux/K max {laux:.3f}",
        e4,
        note=f"final l_aux/K {laux:.3f} (<= 1.5 expected)",
    )

    # --- C5: SmolLM2 conversion (our hypothesis)
    t4w = _opt(folder, "table4_windows")
    st5 = "SmolLM2 at {b} heads: ppl query-norm < mean random < inverse, and query-norm <= 1.5 x original (our hypothesis)"
    if t4w is None:
        t4 = _opt(folder, "table4")
        why = (
            "SmolLM2 part skipped (smollm=False; the gpu machine has no SmolLM2 weights)"
            if t4 is None
            else "this run saved no per-window NLL (table4_windows.csv): no interval"
        )
        C.untestable("C5", st5.format(b="7/9 and 5/9"), PUB["C5"], why, kind="hypothesis")
    else:
        t4 = read(folder, "table4")
        mw = t4w.groupby(["budget", "router", "seed"]).nll.mean()
        dmax = max(abs(mw[(r.budget, r.router, r.seed)] - r.nll) for r in t4.itertuples())
        C.check(
            "S11",
            "per-window SmolLM2 NLLs average to the Table 4 NLL of every router",
            dmax < 1e-3,
            _bound(dmax),
            expected="< 1e-3",
        )
        orig = math.exp(t4w[t4w.router == "original"].nll.mean())
        for b in [b for b in pd.unique(t4w.budget) if b != "9/9"]:
            g = t4w[t4w.budget == b].groupby("router").nll.mean().map(math.exp)
            C.add(
                f"C5-{b}",
                st5.format(b=b),
                PUB["C5"],
                f"orig {orig:.1f}, qn {g['query_norm']:.1f}, rand {g['random']:.1f}, inv {g['inverse']:.1f}",
                c5_evidence(t4w, b),
                kind="hypothesis",
                note=f"{t4w.window.nunique()} windows; random = mean over {t4w[t4w.router == 'random'].seed.nunique()} seeds",
            )

    # --- C6: shared heads help (Table 5 direction)
    add_c6(C, img, vit_seeds)

    # --- C7: flat across shared shares (Table 6)
    t6 = read(folder, "table6")
    v6 = list(t6[t6.seed == t6.seed.min()].sort_values("shared_share").variant)
    e7 = c7_evidence(img, v6)
    C.add(
        "C7",
        "Table 6: accuracy flat across shared shares (range <= 1 pp, interval over test images)",
        PUB["C7"],
        f"range {100 * e7.estimate:.1f} pp ({' / '.join(f'{acc[v]:.3f}' for v in v6)})",
        e7,
        note=one_seed,
    )

    # --- C8: shared-head scores vary more across categories than routed ones
    e8 = c8_evidence(read(folder, "score_units"))
    C.add(
        "C8",
        "Figs. C/E: shared-head scores vary more across categories than routed-head scores (ViT, LM)",
        PUB["C8"],
        f"shared - routed SD {e8.estimate:.3f}",
        e8,
        note="one trained model per family",
    )

    # --- C9: MoH heads less redundant (Table B)
    red = read(folder, "redundancy_units")
    e9 = c9_evidence(red)
    C.add(
        "C9",
        "Table B: MoH heads less redundant than MHA (pattern similarity and |output cosine|, ViT and LM)",
        PUB["C9"],
        "MoH - MHA: " + ", ".join(f"{k} {e.estimate:+.3f}" for k, e in c9_parts(red).items()),
        e9,
        note=f"{one_seed}; per-unit means (Table B figure pools tokens)",
    )

    # --- C10, T7-gpu, P rows
    C.untestable(
        "C10",
        "Fig. 2: the converted model recovers > 95 % of the original performance within 10B tokens",
        PUB["C10"],
        "a few straight-through steps only exercise the code path; 10B tokens are out of reach"
        if _opt(folder, "fig2") is not None
        else "SmolLM2 part skipped (smollm=False) and 10B tokens are out of reach",
    )
    reps = _opt(folder, "table7_repeats")
    st7 = "skipping MoH at 50 % heads >= 1.3x faster than MHA at 2048 tokens on a GPU (issue goal)"
    if profile == "gpu" and reps is not None and 2048 in set(reps.seq):
        t7 = read(folder, "table7")
        half = [
            n
            for n in t7.drop_duplicates("variant").itertuples()
            if n.variant != "MHA" and abs(n.activated - 0.5) < 1e-9
        ]
        e = speed_ratio(reps, 2048, (half[0].variant, "skip"))
        C.add(
            "T7-gpu",
            st7,
            PUB["T7-gpu"],
            f"{1 / e[0]:.2f}x",
            less("time skip / MHA at 2048 (median over repeats)", e, "repeats", 1 / T7_GPU_SPEEDUP),
            kind="hypothesis",
        )
    else:
        C.untestable(
            "T7-gpu",
            st7,
            PUB["T7-gpu"],
            "no GPU timing with per-repeat times in this run; CPU ratios in "
            "table7_claims.csv (not nbval-checked: machine-dependent)",
            kind="hypothesis",
        )
    why_vit = "needs ImageNet-1K val (gated) and the MoH-ViT checkpoints"
    for cid, st, why in (
        ("P1", "Table 1: MoH-ViT-B-75 / B-50 / S-80 / S-75 top-1 vs TransNeXt-B 84.8, S 84.7 (quoted)", why_vit),
        (
            "P2",
            "Table 2: MoH-DiT-XL/2-90 FID-50K (7M steps, cfg 1.25) vs DiT-XL/2 3.22",
            "needs the SD VAE, ImageNet statistics and 50K samples",
        ),
        (
            "P3",
            "Table 3: MoH-LLM-B-75 average (6 tasks, 100B tokens) vs LLM-B 47.4",
            "no checkpoints released for the from-scratch LLMs",
        ),
        (
            "P4",
            "Table 4: MoH-LLaMA3-8B 14-task average vs LLaMA3-8B 61.6",
            "needs the 16 GB checkpoint, lm-eval and internet (profile paper)",
        ),
        ("P4g", "Table G: MoH-LLaMA3-8B vs its own stage-1 MHA model 64.7", "stage-1 model not released"),
        ("P5", "Table 5: ViT-S 100 epochs: no shared / + shared / + two-stage", why_vit),
        ("P6", "Table 6: shared share 14-74 % at 75 % active", why_vit),
        (
            "P7",
            "Table 7: 32 heads x 64, length 256, all matmuls sparse: MHA vs MoH-50 (ms)",
            "hardware and batch unstated; sparse-matmul protocol",
        ),
        (
            "P8",
            "Table B (ViT): pattern similarity and output cosine, MHA vs MoH",
            "model, layers and data unstated; needs the checkpoints",
        ),
    ):
        C.untestable(cid, st, PUB[cid], why)
    return C
