"""Per-head decomposition at the decision position, metrics, inert heads, aggregation and interventions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import heads
from ...nn import HeadlabLM
from .model import correct, decision_direction, predict
from .task import BOS, EOS, ONE, TWO, ZERO, Batch, TaskSpec
from .training import load_run


# -- per-head decomposition ----------------------------------------------------------------------
@dataclass
class Decomp:
    """Everything at the decision position of one evaluation set."""

    logits: torch.Tensor  # [n, vocab] the model's own logits
    r: torch.Tensor  # [n, d_model] residual before attention (token embedding)
    o: torch.Tensor  # [n, H, d_model] per-head outputs written into the residual stream
    d: torch.Tensor  # [n, H] per-head decision scores u . o_h
    base: torch.Tensor  # [n] u . r
    row: torch.Tensor  # [n, H, T] attention of the decision query
    max_err: float  # max |logit diff - base - sum_h d_h|
    max_logit_err: float  # max |logits - W_U (r + sum_h o_h)|


def decompose(model: HeadlabLM, b: Batch, spec: TaskSpec, dtype=torch.float64) -> Decomp:
    """Per-head outputs at the decision position. Runs a copy of the model in ``dtype`` (float64 by
    default, so the identity check measures the decomposition, not float32 rounding of large logits)."""
    import copy

    model = copy.deepcopy(model).to(dtype)
    model.set_attn_implementation("eager")
    n = len(b)
    ar = torch.arange(n)
    hd = heads.Heads(model)
    with torch.no_grad(), heads.capture(model, z=True, pattern=True) as cache:
        logits = model(b.ids).logits[ar, b.pos]
    z = cache.z[0][ar, b.pos]  # [n, H, d_head]
    W_O = hd.o_proj(0).weight.detach().view(model.config.d_model, hd.n_heads, hd.d_head)  # [D, H, dh]
    o = torch.einsum("nhe,dhe->nhd", z, W_O)
    with torch.no_grad():
        r = model.embed_tokens(b.ids[ar, b.pos])
        if model.pos is not None:
            r = r + model.pos(b.pos)
    u = decision_direction(model, spec)
    W_U = model.lm_head.weight.detach()
    d = o @ u
    base = r @ u
    recon = (r + o.sum(1)) @ W_U.T
    if spec.variant == "B":
        ld = logits[:, EOS] - 0.5 * (logits[:, ZERO] + logits[:, ONE])
    else:
        ld = logits[:, ONE] - logits[:, ZERO]
    err = (ld - base - d.sum(1)).abs().max().item()
    row = cache.pattern[0][ar, :, b.pos]  # [n, H, T]
    return Decomp(*(t.float() for t in (logits, r, o, d, base, row)), err, (logits - recon).abs().max().item())


# -- metrics --------------------------------------------------------------------------------------
def roc_auc(score, y) -> float:
    """Mann-Whitney AUC of ``score`` against binary ``y`` (ties count one half). Signed: < 0.5 means
    the score ranks the negatives higher."""
    s, y = np.asarray(score, dtype=np.float64), np.asarray(y).astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def best_threshold_acc(score, y) -> float:
    """Separation accuracy: the best accuracy of any rule ``score > t`` or ``score < t`` (sign-agnostic),
    computed exactly over all thresholds between distinct sorted scores."""
    s, y = np.asarray(score, dtype=np.float64), np.asarray(y).astype(bool)
    n = len(s)
    order = np.argsort(s, kind="mergesort")
    ss, yy = s[order], y[order]
    # predict positive for score > t: t below index k (k items below). acc(k) = neg_below + pos_above
    neg_below = np.concatenate([[0], np.cumsum(~yy)])
    pos_above = yy.sum() - np.concatenate([[0], np.cumsum(yy)])
    acc = (neg_below + pos_above) / n
    # only cut between distinct values
    cut_ok = np.concatenate([[True], ss[1:] != ss[:-1], [True]])
    acc = acc[cut_ok]
    return float(max(acc.max(), (1 - acc).max()))


def head_metrics(dec: Decomp, model: HeadlabLM, b: Batch, spec: TaskSpec) -> list[dict]:
    """Per head: l-acc (this head alone, others zero-ablated, direct path kept, argmax over the whole
    vocabulary), l_syntax (that argmax is a valid continuation), l-acc×H (the head scaled by H),
    ROC AUC of d_h, s-acc of d_h, and the attention signature w01, w02 (ratios of the mean weight on
    one 1 / one 2 to the mean weight on one 0) plus the mass on BOS and on the decision token."""
    W_U = model.lm_head.weight.detach()
    H = dec.o.shape[1]
    y = b.y
    rows = []
    ids = b.ids
    is0, is1, is2 = (ids == ZERO)[:, None], (ids == ONE)[:, None], (ids == TWO)[:, None]
    self_mask = torch.zeros_like(ids, dtype=torch.bool)
    self_mask[torch.arange(len(b)), b.pos] = True
    for h in range(H):
        alone = (dec.r + dec.o[:, h]) @ W_U.T
        scaled = (dec.r + H * dec.o[:, h]) @ W_U.T
        row = dec.row[:, h]

        def per_tok(m, row=row):  # called within this iteration only
            m = m[:, 0]
            cnt = m.sum(1)
            return torch.where(cnt > 0, (row * m).sum(1) / cnt.clamp(min=1), torch.nan)

        a0, a1, a2 = per_tok(is0), per_tok(is1), per_tok(is2)
        rows.append(
            {
                "head": h,
                "l_acc": correct(alone, y, spec).float().mean().item(),
                "l_syntax": predict(alone, spec)["valid"].float().mean().item(),
                "l_acc_xH": correct(scaled, y, spec).float().mean().item(),
                "auc": roc_auc(dec.d[:, h].numpy(), y.numpy()),
                "s_acc": best_threshold_acc(dec.d[:, h].numpy(), y.numpy()),
                "w01": float(np.nanmedian((a1 / a0).numpy())),
                "w02": float(np.nanmedian((a2 / a0).numpy())),
                "bos_mass": (row * (ids == BOS)).sum(1).mean().item(),
                "self_mass": (row * self_mask).sum(1).mean().item(),
                "mass_0": (row * is0[:, 0]).sum(1).mean().item(),
                "mass_1": (row * is1[:, 0]).sum(1).mean().item(),
                "mass_2": (row * is2[:, 0]).sum(1).mean().item(),
                "d_std": dec.d[:, h].std().item(),
            }
        )
    return rows


# -- inert heads ------------------------------------------------------------------------------------
INERT_FRAC = 0.01  # a head is inert when the std of its decision score is below 1 % of its model's largest


def inert_mask(d: torch.Tensor, frac: float = INERT_FRAC) -> torch.Tensor:
    """``d`` ``[n, H]`` per-head decision scores -> ``[H]`` bool, True for an inert head: one whose score
    barely moves over the inputs (std below ``frac`` of the model's largest). Such a head writes a near-
    constant vector: it adds an offset, it does not count."""
    sd = d.std(0)
    return sd < frac * sd.max()


# -- aggregation ------------------------------------------------------------------------------------
def logreg_acc(d_train, y_train, d_test, y_test) -> float:
    """Logistic regression of the label on the per-head scores (fit on a separate sample)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(d_train)
    clf = LogisticRegression(C=100.0, max_iter=2000).fit(sc.transform(d_train), y_train)
    return float((clf.predict(sc.transform(d_test)) == np.asarray(y_test)).mean())


def aggregation(dec: Decomp, model: HeadlabLM, b: Batch, spec: TaskSpec, dec_fit: Decomp, b_fit: Batch) -> dict:
    """Learned vs uniform aggregation of the heads.

    * ``model_acc``: the model (its own, learned weighting through W_O and W_U);
    * ``logreg_acc``: logistic regression on (d_1..d_H), fit on ``dec_fit``;
    * ``uniform_std_best_acc``: each d_h standardised (sign flipped if its AUC < 0.5), summed with equal
      weights, best threshold (score-level uniform ensemble);
    * ``uniform_vocab_acc`` / ``uniform_vocab_syntax``: every head's whole output rescaled to the same
      decision-score std (their mean, so the summed scale is kept), decoded by the model's own
      unembedding over the full vocabulary, no threshold tuning (vocabulary-level uniform ensemble);
    * ``uniform_active_acc`` / ``uniform_active_syntax``: the same over the heads that are not inert
      (``inert_mask`` on the fit sample); an inert head keeps its own output, unscaled. Rescaling an inert
      head to the common std multiplies a near-constant vector by 100× or more, so its offset decides
      the answer: this variant asks the paper's question of the heads that do vary;
    * ``n_inert``: the number of inert heads.
    """
    W_U = model.lm_head.weight.detach()
    y = b.y
    d, df = dec.d.numpy(), dec_fit.d.numpy()
    mu, sd = df.mean(0), df.std(0) + 1e-12
    sign = np.array([1.0 if roc_auc(df[:, h], b_fit.y.numpy()) >= 0.5 else -1.0 for h in range(d.shape[1])])
    uni = (((d - mu) / sd) * sign).sum(1)
    std = dec_fit.d.std(0)
    c = std.mean() / (std + 1e-12)
    vocab = (dec.r + (dec.o * c[None, :, None]).sum(1)) @ W_U.T
    inert = inert_mask(dec_fit.d)
    act = std[~inert]
    c_act = torch.where(inert, torch.ones_like(std), act.mean() / (std + 1e-12))
    active = (dec.r + (dec.o * c_act[None, :, None]).sum(1)) @ W_U.T
    return {
        "model_acc": correct(dec.logits, y, spec).float().mean().item(),
        "logreg_acc": logreg_acc(df, b_fit.y.numpy(), d, y.numpy()),
        "uniform_std_best_acc": best_threshold_acc(uni, y.numpy()),
        "uniform_vocab_acc": correct(vocab, y, spec).float().mean().item(),
        "uniform_vocab_syntax": predict(vocab, spec)["valid"].float().mean().item(),
        "model_syntax": predict(dec.logits, spec)["valid"].float().mean().item(),
        "uniform_active_acc": correct(active, y, spec).float().mean().item(),
        "uniform_active_syntax": predict(active, spec)["valid"].float().mean().item(),
        "n_inert": int(inert.sum()),
    }


# -- attention interventions at the decision position ----------------------------------------------
def edit_row(
    row: torch.Tensor, ids: torch.Tensor, kind: str, f0: float = 1.0, f1: float = 1.0, f2: float = 1.0
) -> torch.Tensor:
    """Edit post-softmax attention rows ``[n, H, T]`` of the decision query by key token type, then
    renormalise each row to sum to 1. ``ids`` ``[n, T]``. Kinds: ``none``, ``zero2`` (weight on every 2
    set to 0), ``balance01`` (every 0 and 1 key gets the mean of the per-token 0 weight and per-token 1
    weight), ``scale`` (0 keys x f0, 1 keys x f1, 2 keys x f2), ``uniform`` (the visible positions, equal weight).
    Visibility is never extended: a key with zero weight (future / padding) stays at zero."""
    is0, is1, is2 = (ids == ZERO)[:, None], (ids == ONE)[:, None], (ids == TWO)[:, None]
    w = row.clone()
    if kind == "none":
        return w
    if kind == "zero2":
        w = w.masked_fill(is2, 0.0)
    elif kind == "balance01":

        def per_tok(m, row=row):  # called within this iteration only
            cnt = m.sum(-1)
            return (w * m).sum(-1) / cnt.clamp(min=1), cnt > 0

        a0, has0 = per_tok(is0)
        a1, has1 = per_tok(is1)
        k = (a0 * has0 + a1 * has1) / (has0.float() + has1.float()).clamp(min=1)
        w = torch.where(is0 | is1, k[..., None].expand_as(w), w)
    elif kind == "scale":
        w = w * torch.where(is0, f0, 1.0) * torch.where(is1, f1, 1.0) * torch.where(is2, f2, 1.0)
    elif kind == "uniform":
        w = (row > 0).to(w.dtype)
    else:
        raise ValueError(f"unknown intervention {kind!r}")
    return w / w.sum(-1, keepdim=True).clamp(min=1e-30)


def intervene_logits(
    model: HeadlabLM, b: Batch, kind: str, f0: float = 1.0, f1: float = 1.0, heads_mask=None
) -> torch.Tensor:
    """Decision logits after editing every head's (or ``heads_mask``'s) attention row at the decision
    position: z = edited weights @ the unchanged values, through headlab.heads.intervene."""
    n = len(b)
    ar = torch.arange(n)

    def edit(view):
        row = view.pattern[ar, :, b.pos]  # [n, H, T]
        new = edit_row(row, b.ids, kind, f0, f1)
        if heads_mask is not None:
            m = torch.as_tensor(heads_mask, dtype=torch.bool)[None, :, None]
            new = torch.where(m, new, row)
        z = view.z.clone()
        z[ar, b.pos] = torch.einsum("nhk,nkhe->nhe", new, view.v)
        return z

    with torch.no_grad(), heads.eager(model), heads.intervene(model, edit, needs=("pattern", "v")):
        logits = model(b.ids).logits[ar, b.pos]
    return logits


def interventions(model: HeadlabLM, b: Batch, spec: TaskSpec, scales=((1, 2), (2, 1), (1, 3), (3, 1))) -> list[dict]:
    """Accuracy after each edit, and (for scale) agreement of the predictions with the rule
    f1*n1 > f0*n0 (the rule the edited counts would imply)."""
    rows = []
    for kind, f0, f1 in [("none", 1, 1), ("zero2", 1, 1), ("balance01", 1, 1), ("uniform", 1, 1)] + [
        ("scale", f0, f1) for f0, f1 in scales
    ]:
        lg = intervene_logits(model, b, kind, f0, f1)
        pred = predict(lg, spec)
        rule = (f1 * b.n1 > f0 * b.n0).long()
        name = kind if kind != "scale" else f"scale f0={f0:g} f1={f1:g}"
        rows.append(
            {
                "edit": name,
                "kind": kind,
                "f0": f0,
                "f1": f1,
                "acc": correct(lg, b.y, spec).float().mean().item(),
                "rule_agreement": ((pred["label"] == rule) & pred["valid"]).float().mean().item(),
                "syntax": pred["valid"].float().mean().item(),
            }
        )
    return rows


RATIO_F = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)
RATIO_F2 = (0, 1, 4)


def ratio_sweep(model: HeadlabLM, b: Batch, spec: TaskSpec, fs=RATIO_F, f2s=RATIO_F2) -> list[dict]:
    """The seed's ratio sweep: every head's decision-query attention on 1s scaled by ``f`` and on 2s by
    ``f2`` (0s fixed, rows renormalised, values unchanged), then each head's s-acc and AUC on its own
    edited decision score ``u . W_O^h z_h``. At ``f = f2 = 1`` this is the unedited head."""
    ar = torch.arange(len(b))
    hd = heads.Heads(model)
    with torch.no_grad(), heads.eager(model), heads.capture(model, z=False, pattern=True, v=True) as cache:
        model(b.ids)
    row = cache.pattern[0][ar, :, b.pos]  # [n, H, T]
    v = cache.v[0]  # [n, T, H, d_head]
    W_O = hd.w_o(0).detach()  # [H, d_head, d_model]
    u = decision_direction(model, spec)
    wu = torch.einsum("hed,d->he", W_O, u)  # [H, d_head]: the decision score read from z_h
    y = b.y.numpy()
    rows = []
    for f2 in f2s:
        for f in fs:
            new = edit_row(row, b.ids, "scale", 1.0, f, f2)  # [n, H, T]
            d = torch.einsum("nhk,nkhe,he->nh", new, v, wu).numpy()  # [n, H]
            for h in range(d.shape[1]):
                rows.append(
                    {"f": f, "f2": f2, "head": h, "s_acc": best_threshold_acc(d[:, h], y), "auc": roc_auc(d[:, h], y)}
                )
    return rows


def checkpoint_heads(res: dict, b: Batch) -> list[dict]:
    """Per kept checkpoint and head: AUC, s-acc, l-acc, the score's std and whether the head is inert,
    plus the model's accuracy at that step (for the dynamics of the calibration gap and of inert heads)."""
    spec = TaskSpec(**res["spec"])
    rows = []
    for step in sorted(res.get("checkpoints", {})):
        model = load_run(res, step)
        dec = decompose(model, b, spec)
        inert = inert_mask(dec.d)
        acc = correct(dec.logits, b.y, spec).float().mean().item()
        for r in head_metrics(dec, model, b, spec):
            rows.append(
                {
                    "step": step,
                    "model_acc": acc,
                    **{k: r[k] for k in ("head", "auc", "s_acc", "l_acc", "d_std")},
                    "inert": bool(inert[r["head"]]),
                }
            )
    return rows
