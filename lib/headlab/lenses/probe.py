"""Every lens, measured per text on one model: one forward as the model was trained (eager, patterns), one
without that ⟨bos⟩ condition (sink score only), one forward and backward for attribution patching, and one
forward per exactly ablated head of a sample.

All per-head quantities are read at the input of the attention output projection (``z``, per query
head; GQA-aware through ``Heads.kv_map``). The result is a tidy per-(text, layer, head) frame, the unit of
replication being the text: every statistic downstream is a mean over texts, so a bootstrap over texts
gives its interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import heads
from ..data import paragraphs
from ..models import bos_id, encode
from ..papers.dha_fusion.cka import cka_matrix
from ..train import progress_bar


def nearest_cka(acts: torch.Tensor) -> torch.Tensor:
    """``[n]`` the largest linear CKA of each of ``n`` heads with another head of the same layer (NaN for n = 1)."""
    n = acts.shape[0]
    if n < 2:
        return torch.full((n,), float("nan"), dtype=torch.float64)
    c = torch.from_numpy(cka_matrix(acts))  # DHA's pairwise linear CKA, [n, n]
    c.fill_diagonal_(-float("inf"))
    return c.max(-1).values


def first_token_share(pattern: torch.Tensor) -> torch.Tensor:
    """pattern ``[batch, head, q, k]`` -> ``[batch, head]`` mean attention on position 0 over every query row
    (the sink score; the dormant paper's AWFT is the same quantity)."""
    return pattern[..., 0].mean(-1)


def topk_share(score: torch.Tensor, k: int) -> torch.Tensor:
    """score ``[batch, pos, head]`` -> ``[batch, head]`` share of positions at which the head is in the top k."""
    idx = score.topk(k, dim=-1).indices
    sel = torch.zeros_like(score).scatter_(-1, idx, 1.0)
    return sel.mean(1)


# ------------------------------------------------------------------------------------------------ texts
@dataclass
class Texts:
    """``n`` windows of ``T`` tokens as the model was trained (``ids``) and with the other ⟨bos⟩ condition
    (``other``), with their text types."""

    ids: torch.Tensor  # [n, T]
    other: torch.Tensor  # [n, T]
    types: list[str]
    bos: bool  # ⟨bos⟩ first in ids


def texts(tok, bos: bool, types: Sequence[str], per_type: int, T: int, seed: int = 0) -> Texts:
    """``per_type`` windows of each text type: the first ``T`` tokens of paragraphs long enough (shuffled
    by seed), with ⟨bos⟩ first where the model was trained with one (and the other way in ``other``)."""
    b = [bos_id(tok)]
    rows, other, labels = [], [], []
    for t in types:
        got = 0
        for p in paragraphs([t], min_chars=200, max_chars=4000, seed=seed):
            w = encode(tok, p["text"], False)
            if len(w) < T:
                continue
            with_bos, without = b + w[: T - 1], w[:T]
            rows.append(with_bos if bos else without)
            other.append(without if bos else with_bos)
            labels.append(t)
            got += 1
            if got == per_type:
                break
        if got < per_type:
            raise ValueError(f"text type {t!r} has only {got} paragraphs of {T} tokens; need {per_type}")
    return Texts(torch.tensor(rows), torch.tensor(other), labels, bos)


# ------------------------------------------------------------------------------------------ one forward
def _nll_per_text(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``[batch]`` mean next-token loss of each row (every position predicts the next one)."""
    lp = logits[:, :-1].float().log_softmax(-1)
    return -lp.gather(-1, ids[:, 1:, None])[..., 0].mean(-1)


@torch.no_grad()
def _lens_batch(model, ids: torch.Tensor, k_route: int) -> dict[str, np.ndarray]:
    """The per-text lenses of one batch: ``{name: [batch, layer, head]}`` and ``nll`` ``[batch]``."""
    h = heads.Heads(model)
    H, L = h.n_heads, h.n_layers
    with heads.capture(model, z=True, pattern=True) as cache, heads.projections(h) as proj:
        logits = model(input_ids=ids).logits
    out = {k: np.zeros((len(ids), L, H)) for k in LENS_COLUMNS if k not in ("attr_zero", "attr_mean")}
    for l in range(L):
        z = cache.z[l].float()  # [batch, pos, head, d_head]
        pat = cache.pattern[l].float()  # [batch, head, q, k]
        ahon = z.norm(dim=-1).mean(1)  # [batch, head]
        out["ahon"][:, l] = ahon.numpy()
        out["ahon_ln"][:, l] = (ahon / ahon.mean(-1, keepdim=True).clamp_min(1e-12)).numpy()
        out["sink"][:, l] = first_token_share(pat).numpy()
        zo = torch.einsum("bphd,hdm->bphm", z, h.w_o(l).detach().float()).norm(dim=-1)  # ||z_h W_O^h||
        out["router_oracle"][:, l] = topk_share(zo, k_route).numpy()
        if ("q", l) in proj:
            q = proj[("q", l)].float()
            qn = q.view(*q.shape[:2], H, -1).norm(dim=-1)  # [batch, pos, head]
            out["router_qnorm"][:, l] = topk_share(qn, k_route).numpy()
        else:
            out["router_qnorm"][:, l] = np.nan
        kv = h.kv_map(l)
        for b in range(len(ids)):
            out["z_cka"][b, l] = nearest_cka(z[b].transpose(0, 1)).numpy()
            if ("k", l) in proj and ("v", l) in proj and proj[("k", l)].shape == proj[("v", l)].shape:
                k_, v_ = proj[("k", l)][b].float(), proj[("v", l)][b].float()  # [pos, n_kv * d_head]
                n_kv = h.n_kv_heads
                kvh = torch.cat([k_.view(len(k_), n_kv, -1), v_.view(len(v_), n_kv, -1)], -1).transpose(0, 1)
                out["kv_cka"][b, l] = nearest_cka(kvh).numpy()[kv.numpy()]
            else:
                out["kv_cka"][b, l] = np.nan
    out["nll"] = _nll_per_text(logits, ids).numpy()
    out["z_sum"] = np.stack([cache.z[l].float().sum((0, 1)).numpy() for l in range(L)])  # [layer, head, d_head]
    return out


def _sink_batch(model, ids: torch.Tensor) -> np.ndarray:
    """``[batch, layer, head]`` mean attention on position 0 over every query row."""
    with torch.no_grad(), heads.capture(model, z=False, pattern=True) as cache:
        model(input_ids=ids)
    return first_token_share(cache.stack("pattern").float()).permute(1, 0, 2).numpy()


def _attribution_batch(model, ids: torch.Tensor, z_mean: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Attribution patching: first-order ΔNLL of each text for zero- and mean-ablating each head,
    ``(z' - z) · dNLL/dz`` summed over positions and d_head, from one forward and backward."""
    h = heads.Heads(model)
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def edit(view):
        delta = torch.zeros_like(view.z, requires_grad=True)  # dNLL/d(delta) = dNLL/dz
        seen[view.layer] = (view.z.detach(), delta)
        return view.z + delta

    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), heads.intervene(model, edit):
            logits = model(input_ids=ids).logits
            _nll_per_text(logits, ids).sum().backward()  # rows are independent: each row's own gradient
    finally:
        for p, r in zip(model.parameters(), req, strict=True):
            p.requires_grad_(r)
    zero = np.zeros((len(ids), h.n_layers, h.n_heads))
    mean = np.zeros_like(zero)
    for l, (z, d) in seen.items():
        g = d.grad.float()  # [batch, pos, head, d_head]
        zero[:, l] = (-z.float() * g).sum((1, 3)).numpy()
        mean[:, l] = ((z_mean[l][None, None].float() - z.float()) * g).sum((1, 3)).numpy()
    return zero, mean


# ---------------------------------------------------------------------------------------- exact ablation
def _set_head(layer: int, head: int, value: torch.Tensor | None):
    """An edit replacing head ``head`` of ``layer`` by ``value`` (``[d_head]``; None: zero) at every position."""

    def edit(view):
        if view.layer != layer:
            return None
        z = view.z.clone()
        z[:, :, head] = 0.0 if value is None else value.to(z)
        return z

    return edit


@torch.no_grad()
def exact_ablation(model, ids: torch.Tensor, sample: Sequence[tuple[int, int]], z_mean, batch: int, progress=True):
    """Per text, the exact ΔNLL of zero- and mean-ablating each ``(layer, head)`` of ``sample`` alone:
    ``{(layer, head): (zero [n], mean [n])}`` relative to the unablated loss."""
    base = torch.cat(
        [
            _nll_per_text(model(input_ids=ids[s : s + batch]).logits, ids[s : s + batch])
            for s in range(0, len(ids), batch)
        ]
    )
    out = {}
    for l, hh in progress_bar(list(sample), "exact ablations", progress):
        res = []
        for value in (None, z_mean[l][hh]):
            with heads.intervene(model, _set_head(l, hh, value), layers=[l]):
                nll = torch.cat(
                    [
                        _nll_per_text(model(input_ids=ids[s : s + batch]).logits, ids[s : s + batch])
                        for s in range(0, len(ids), batch)
                    ]
                )
            res.append((nll - base).numpy())
        out[(l, hh)] = tuple(res)
    return out


# ----------------------------------------------------------------------------------------------- all lenses
LENS_COLUMNS = (
    "ahon",
    "ahon_ln",
    "sink",
    "sink_other",
    "kv_cka",
    "z_cka",
    "router_qnorm",
    "router_oracle",
    "attr_zero",
    "attr_mean",
)


@dataclass
class Measured:
    per_text: pd.DataFrame  # model, text, type, layer, head, every lens, nll
    exact: pd.DataFrame  # model, text, type, layer, head, group, dnll_zero, dnll_mean
    n_layers: int
    n_heads: int
    n_kv_heads: int

    def summary(self) -> str:
        d = self.per_text
        n_ex = len(self.exact[["layer", "head"]].drop_duplicates())
        return (
            f"{d.model.iloc[0]}: {d.text.nunique()} windows, {self.n_layers} x {self.n_heads} heads ({self.n_kv_heads} KV), "
            f"mean NLL {d.groupby('text').nll.first().mean():.3f} nats, {n_ex} heads ablated exactly"
        )


def choose_sample(ahon_ln_mean: np.ndarray, n_random: int, n_dormant: int, q: float, seed: int) -> list[tuple]:
    """Heads to ablate exactly: ``n_random`` drawn uniformly (seeded) and ``n_dormant`` drawn from the heads
    whose mean AHON-LN is in the lowest ``q`` quantile (the dormant lens's flagged set), as
    ``(layer, head, group)``; a head drawn twice is kept once, in the random group."""
    L, H = ahon_ln_mean.shape
    rng = np.random.default_rng(seed)
    flat = ahon_ln_mean.ravel()
    rand = rng.choice(L * H, size=min(n_random, L * H), replace=False)
    flagged = np.flatnonzero(flat <= np.quantile(flat, q))
    flagged = np.setdiff1d(flagged, rand)
    dorm = rng.choice(flagged, size=min(n_dormant, len(flagged)), replace=False) if len(flagged) else []
    return [(int(i // H), int(i % H), "random") for i in rand] + [(int(i // H), int(i % H), "dormant") for i in dorm]


def measure(
    model,
    name: str,
    tx: Texts,
    k_route: int | None = None,
    n_random: int = 12,
    n_dormant: int = 6,
    dormant_q: float = 0.1,
    batch: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> Measured:
    """Every lens on every text of ``tx`` for one model (see the module docstring)."""
    h = heads.Heads(model)
    L, H = h.n_layers, h.n_heads
    k_route = k_route or max(1, H // 2)
    parts: dict[str, list] = {}
    with heads.eager(model):
        for s in progress_bar(range(0, len(tx.ids), batch), f"{name}: lenses", progress):
            got = _lens_batch(model, tx.ids[s : s + batch], k_route)
            got["sink_other"] = _sink_batch(model, tx.other[s : s + batch])
            for k, v in got.items():
                parts.setdefault(k, []).append(v)
        z_mean = torch.as_tensor(np.sum(parts.pop("z_sum"), 0) / (tx.ids.numel()))  # [layer, head, d_head]
        for s in progress_bar(range(0, len(tx.ids), batch), f"{name}: attribution", progress):
            zero, mean = _attribution_batch(model, tx.ids[s : s + batch], z_mean)
            parts.setdefault("attr_zero", []).append(zero)
            parts.setdefault("attr_mean", []).append(mean)
        arr = {k: np.concatenate(v) for k, v in parts.items()}
        sample = choose_sample(arr["ahon_ln"].mean(0), n_random, n_dormant, dormant_q, seed)
        ex = exact_ablation(model, tx.ids, [(l, hh) for l, hh, _ in sample], z_mean, batch, progress)
    n = len(tx.ids)
    t_idx, l_idx, h_idx = np.meshgrid(np.arange(n), np.arange(L), np.arange(H), indexing="ij")
    per_text = pd.DataFrame(
        {
            "model": name,
            "text": t_idx.ravel(),
            "type": np.asarray(tx.types)[t_idx.ravel()],
            "layer": l_idx.ravel(),
            "head": h_idx.ravel(),
            **{k: arr[k].ravel() for k in LENS_COLUMNS},
            "nll": arr["nll"][t_idx.ravel()],
        }
    )
    rows = []
    for l, hh, group in sample:
        zero, mean = ex[(l, hh)]
        for t in range(n):
            rows.append(dict(model=name, text=t, type=tx.types[t], layer=l, head=hh, group=group,
                             dnll_zero=zero[t], dnll_mean=mean[t]))  # fmt: skip
    return Measured(per_text, pd.DataFrame(rows), L, H, h.n_kv_heads)
