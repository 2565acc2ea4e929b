"""Attention sinks as a brake on over-mixing: Barbero et al., "Why do LLMs attend to the first token?"
(COLM 2025, arXiv 2504.02732). The science behind ``notebooks/04_attention_sinks.ipynb``.

Plain functions, no plotting:

* **sink metric** (Gu et al.'s definition, reused by the paper): for every prompt, layer and query
  head, the mean attention that all ``T`` query rows put on position 0 (row 0 included, so a head
  with uniform causal attention scores ``H_T / T``); a head is a sink head when that mean exceeds
  ``eps``; the metric is the share of (prompt, layer, head) triples that are sink heads.
  ⟨bos⟩ is always an explicit argument: ``prompt_ids(..., bos=True|False)``.
* **perturbation spread**: change one word, measure ``||h - h'|| / ||h||`` of every later token's
  residual stream after every layer, with and without ⟨bos⟩.
* **mixing simulation** (Fig. 1): a toy causal mixer ``x <- rms(x + A_s (x W))`` in which a share
  ``s`` of every row's attention parks on a first token whose value is zero.
* **value norms / apostrophe head** (Fig. 4).
* **pretraining** of small headlab models with ⟨bos⟩ / packing / intra-document-masking variants.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import heads
from ..data import ByteTokenizer
from ..models import encode
from ..nn import Attention, Config, HeadlabLM, apply_rope
from ..train import TrainConfig, train

APOSTROPHES = ("'", "\u2019")


# ------------------------------------------------------------------------------------------------
# prompts and attention patterns
# ------------------------------------------------------------------------------------------------


def chance_score(T: int) -> float:
    """First-position score of a head with uniform causal attention over ``T`` tokens: H_T / T."""
    return sum(1.0 / i for i in range(1, T + 1)) / T


def prompt_ids(tok, texts, T: int, bos: bool) -> tuple[torch.Tensor, list[int]]:
    """``[n, T]`` ids: each text's first tokens, with exactly one leading ⟨bos⟩ when ``bos`` (then
    ``T - 1`` text tokens) and none otherwise (``T`` text tokens). Texts shorter than ``T`` tokens
    are skipped; returns the ids and the indices of the texts used."""
    rows, used = [], []
    for i, t in enumerate(texts):
        ids = encode(tok, t, bos)
        if len(ids) >= T:
            rows.append(ids[:T])
            used.append(i)
    if not rows:
        raise ValueError(f"no text has {T} tokens")
    return torch.tensor(rows, dtype=torch.long), used


def paired_prompt_ids(tok, texts, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same text tokens with and without ⟨bos⟩: ``([n, T], [n, T-1])``; row i of the second
    is row i of the first without its leading ⟨bos⟩ (texts with fewer than ``T-1`` tokens dropped)."""
    with_bos, _ = prompt_ids(tok, texts, T, bos=True)
    return with_bos, with_bos[:, 1:].clone()


def _is_headlab(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "headlab"


def _body(model, ids: torch.Tensor, doc_ids: torch.Tensor | None = None):
    """Run the model body only (no vocabulary projection)."""
    if _is_headlab(model):
        return model.hidden(ids, doc_ids)
    base = getattr(model, model.base_model_prefix)
    return base(input_ids=ids, use_cache=False)


@torch.no_grad()
def attention_patterns(
    model, ids: torch.Tensor, doc_ids: torch.Tensor | None = None, batch_size: int = 16
) -> torch.Tensor:
    """``[layer, batch, head, q, k]`` attention weights (float32, CPU). HF models must run eager
    attention; a headlab model is switched to its eager path for the call."""
    # HF models must already be eager (capture says so otherwise); a headlab model is switched for the call
    with heads.eager(model) if _is_headlab(model) else contextlib.nullcontext():
        dev = next(model.parameters()).device
        out = []
        for s in range(0, len(ids), batch_size):
            with heads.capture(model, z=False, pattern=True) as cache:
                _body(
                    model,
                    ids[s : s + batch_size].to(dev),
                    None if doc_ids is None else doc_ids[s : s + batch_size].to(dev),
                )
            out.append(cache.stack("pattern").float().cpu())
        return torch.cat(out, dim=1)


def first_position_scores(patterns: torch.Tensor, include_first_row: bool = True) -> torch.Tensor:
    """``[prompt, layer, head]`` mean attention on key position 0 over the query rows (Gu et al.'s
    importance score of the first token). ``include_first_row=False`` drops the trivial row 0."""
    col = patterns[..., 0]  # [layer, batch, head, q]
    if not include_first_row:
        col = col[..., 1:]
    return col.mean(-1).permute(1, 0, 2).contiguous()


@torch.no_grad()
def sink_scores(
    model, ids: torch.Tensor, batch_size: int = 16, keep: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """First-position scores ``[prompt, layer, head]`` computed batch by batch (so large models never
    hold every prompt's patterns), plus the full patterns ``[layer, keep, head, q, k]`` of the first
    ``keep`` prompts (None when ``keep == 0``)."""
    out, kept = [], None
    for s in range(0, len(ids), batch_size):
        pat = attention_patterns(model, ids[s : s + batch_size], batch_size=batch_size)
        out.append(first_position_scores(pat))
        if s == 0 and keep:
            kept = pat[:, :keep].clone()
    return torch.cat(out), kept


def row_entropy(patterns: torch.Tensor) -> torch.Tensor:
    """``[..., q]`` entropy (nats) of every attention row of ``patterns [..., q, k]``; higher means a
    smoother, less peaked row."""
    p = patterns.clamp_min(0)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def sink_rate(scores: torch.Tensor, eps: float) -> float:
    """Share (0..1) of (prompt, layer, head) triples whose first-position score exceeds ``eps``."""
    return float((scores > eps).float().mean())


def sink_rate_per_layer(scores: torch.Tensor, eps: float) -> np.ndarray:
    """``[layer]`` share of (prompt, head) pairs of each layer that are sink heads."""
    return (scores > eps).float().mean(dim=(0, 2)).numpy()


def sink_metrics(scores: torch.Tensor, eps_list=(0.3, 0.8)) -> dict:
    """Overall sink rate (in %) at every ``eps`` plus the mean first-position score."""
    out = {f"sink_{e:g}": 100 * sink_rate(scores, e) for e in eps_list}
    out["mean_score"] = float(scores.mean())
    return out


def sink_profile(scores: torch.Tensor, eps_list=(0.3, 0.8), **labels) -> pd.DataFrame:
    """Tidy per-layer table: layer, eps, sink rate (%), mean first-position score, plus ``labels``."""
    rows = []
    mean = scores.mean(dim=(0, 2)).numpy()
    for e in eps_list:
        for l, r in enumerate(sink_rate_per_layer(scores, e)):
            rows.append({**labels, "layer": l, "eps": e, "sink_pct": 100 * float(r), "mean_score": float(mean[l])})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# perturbation spread (Fig. 2)
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def layer_states(model, ids: torch.Tensor) -> torch.Tensor:
    """``[layer, batch, pos, d_model]`` residual stream after every decoder block (no final norm)."""
    h = heads.Heads(model)
    states: dict[int, torch.Tensor] = {}
    handles = []
    for l, block in enumerate(h.blocks):

        def hook(_m, _inp, out, l=l):
            states[l] = (out[0] if isinstance(out, tuple) else out).detach().float().cpu()

        handles.append(block.register_forward_hook(hook))
    try:
        _body(model, ids.to(next(model.parameters()).device))
    finally:
        for hd in handles:
            hd.remove()
    return torch.stack([states[l] for l in sorted(states)])


def _edit_span(a: list[int], b: list[int]) -> tuple[int, int]:
    """Lengths of the common prefix and of the common suffix (not overlapping the prefix)."""
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[-1 - s] == b[-1 - s]:
        s += 1
    return p, s


def perturbation_spread(model, tok, text: str, old: str, new: str, bos: bool) -> tuple[pd.DataFrame, dict]:
    """Replace the first ``old`` in ``text`` by ``new``; relative change ``||h - h'|| / ||h||`` of
    every token after the edit, after every layer. Tokens after the edit are aligned from the end,
    so the two versions may differ in length. ``text_pos`` counts text tokens (⟨bos⟩ excluded), so
    runs with and without ⟨bos⟩ line up. Returns the table and the ids actually fed."""
    if old not in text:
        raise ValueError(f"{old!r} does not occur in the text")
    a = encode(tok, text, bos)
    b = encode(tok, text.replace(old, new, 1), bos)
    p, s = _edit_span(a, b)
    if s == 0:
        raise ValueError("the edit is at the end of the text: no later tokens to compare")
    ha = layer_states(model, torch.tensor([a]))[:, 0]  # [layer, pos, d]
    hb = layer_states(model, torch.tensor([b]))[:, 0]
    ta, tb = ha[:, len(a) - s :], hb[:, len(b) - s :]
    rel = ((ta - tb).norm(dim=-1) / ta.norm(dim=-1)).numpy()  # [layer, s]
    first = len(a) - s - int(bos)
    rows = [
        {"bos": bos, "layer": l, "text_pos": first + j, "rel_change": float(rel[l, j])}
        for l in range(rel.shape[0])
        for j in range(rel.shape[1])
    ]
    meta = {"ids": a, "ids_perturbed": b, "edit_start": p, "n_after": s}
    return pd.DataFrame(rows), meta


# ------------------------------------------------------------------------------------------------
# mixing simulation (Fig. 1)
# ------------------------------------------------------------------------------------------------


def sink_attention(n: int, s: float, dtype=torch.float64) -> torch.Tensor:
    """``[n, n]`` causal attention in which every query i >= 1 puts ``s`` on position 0 and spreads
    ``1 - s`` uniformly over positions 1..i; row 0 attends to itself."""
    A = torch.zeros(n, n, dtype=dtype)
    A[0, 0] = 1.0
    for i in range(1, n):
        A[i, 0] = s
        A[i, 1 : i + 1] = (1.0 - s) / i
    return A


def mix(x0: torch.Tensor, weights: list[torch.Tensor], A: torch.Tensor, sink_value_zero: bool = True) -> torch.Tensor:
    """``[layer + 1, n, d]`` trajectory of ``x <- rms(x + A (x W_l))``; with ``sink_value_zero`` the
    first token's value is 0, so attention parked on it adds nothing (the paper's no-op)."""
    xs, x = [x0], x0
    for W in weights:
        v = x @ W
        if sink_value_zero:
            v = torch.cat([torch.zeros_like(v[:1]), v[1:]])
        x = x + A @ v
        x = x / x.pow(2).mean(-1, keepdim=True).sqrt()
        xs.append(x)
    return torch.stack(xs)


def mixing_simulation(
    sinks=(0.0, 0.5, 0.9, 0.99), n_tokens: int = 32, d: int = 32, n_layers: int = 24, seed: int = 0
) -> pd.DataFrame:
    """Per sink weight ``s`` and depth: mean pairwise cosine similarity of the non-sink tokens
    (1 = collapsed) and the sensitivity ``||d x_j^(l) / d x_1^(0)||_F`` of every token j to the
    first non-sink token (exact Jacobian, forward-mode). Same random tokens and weights for all s."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_tokens, d, generator=g, dtype=torch.float64)
    Ws = [torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0] for _ in range(n_layers)]
    off = ~torch.eye(n_tokens - 1, dtype=torch.bool)
    rows = []
    for s in sinks:
        A = sink_attention(n_tokens, s)
        traj = mix(x0, Ws, A)

        def f(x1, A=A):  # this sink count's attention
            return mix(torch.cat([x0[:1], x1[None], x0[2:]]), Ws, A)

        J = torch.func.jacfwd(f)(x0[1])  # [layer+1, n, d, d]
        sens = J.flatten(-2).norm(dim=-1)  # [layer+1, n]
        for l in range(n_layers + 1):
            y = F.normalize(traj[l, 1:], dim=-1)
            cos = float((y @ y.T)[off].mean())
            for j in range(1, n_tokens):
                rows.append(
                    {"sink_weight": s, "layer": l, "token": j, "mean_cosine": cos, "sensitivity": float(sens[l, j])}
                )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# value norms and the apostrophe head (Fig. 4)
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def value_norms(model, ids: torch.Tensor) -> torch.Tensor:
    """``[prompt, layer, head, pos]`` L2 norm of the value vector each query head reads."""
    dev = next(model.parameters()).device
    with heads.capture(model, z=False, v=True) as cache:
        _body(model, ids.to(dev))
    v = cache.stack("v").float().cpu()  # [layer, batch, pos, head, d]
    return v.norm(dim=-1).permute(1, 0, 3, 2).contiguous()


def bos_value_norm_table(scores: torch.Tensor, vnorms: torch.Tensor) -> pd.DataFrame:
    """Per (layer, head): mean first-position score, norm of the position-0 value, median norm of
    the other positions' values, their ratio and the rank of position 0 among all positions
    (0 = smallest), averaged over prompts."""
    rank = (vnorms < vnorms[..., :1]).sum(-1).float()  # [prompt, layer, head]
    med = vnorms[..., 1:].median(dim=-1).values
    rows = []
    L, H = scores.shape[1:]
    for l in range(L):
        for h in range(H):
            b, m = float(vnorms[:, l, h, 0].mean()), float(med[:, l, h].mean())
            rows.append(
                {
                    "layer": l,
                    "head": h,
                    "score": float(scores[:, l, h].mean()),
                    "bos_value_norm": b,
                    "median_value_norm": m,
                    "ratio": b / m if m > 0 else float("nan"),
                    "bos_rank": float(rank[:, l, h].mean()),
                    "below_median": float((vnorms[:, l, h, 0] < med[:, l, h]).float().mean()),
                }
            )
    return pd.DataFrame(rows)


def apostrophe_texts(types, n: int, window_chars: int = 250, seed: int = 0) -> list[str]:
    """The ``n`` shipped-corpus paragraphs with the most in-word apostrophes (don't, Frederick's) in
    their first ``window_chars`` characters (ties kept in the seeded shuffle order)."""
    import re

    from ..data import paragraphs

    rx = re.compile(r"[A-Za-z][" + "".join(APOSTROPHES) + r"][A-Za-z]")
    paras = [p["text"] for p in paragraphs(types, min_chars=300, seed=seed)]
    counts = [len(rx.findall(p[:window_chars])) for p in paras]
    order = sorted(range(len(paras)), key=lambda i: -counts[i])
    return [paras[i] for i in order[:n] if counts[i] > 0]


def apostrophe_positions(tok, ids: list[int]) -> list[int]:
    """Query positions right after a token that contains an apostrophe."""
    return [q for q in range(1, len(ids)) if any(a in tok.decode([ids[q - 1]]) for a in APOSTROPHES)]


def apostrophe_head_search(patterns: torch.Tensor, fire: list[list[int]]) -> pd.DataFrame:
    """Per (layer, head), from ``patterns [layer, batch, head, q, k]`` and, per prompt, the query
    positions right after an apostrophe token (``fire``): attention to the apostrophe token at
    those queries vs attention to the previous token at all other queries (q >= 1), and attention
    to position 0 at both (the previous-token baseline skips q = 1, whose previous token is position 0).
    An apostrophe head attends to the apostrophe when one precedes and
    parks on position 0 otherwise. Sorted by ``score = attn_to_apostrophe - prev_elsewhere``
    (how specifically the head looks back at an apostrophe rather than at any previous token)."""
    L, B, H, T, _ = patterns.shape
    cols: dict[str, list] = {
        k: [] for k in ("bos_after_apostrophe", "bos_elsewhere", "attn_to_apostrophe", "prev_elsewhere")
    }
    for b in range(B):
        fq = [q for q in fire[b] if q < T]
        if not fq:
            continue
        rest = torch.tensor([q for q in range(1, T) if q not in set(fq)])
        p = patterns[:, b]  # [layer, head, q, k]
        fq_t = torch.tensor(fq)
        cols["bos_after_apostrophe"].append(p[:, :, fq_t, 0].mean(-1))
        cols["bos_elsewhere"].append(p[:, :, rest, 0].mean(-1))
        cols["attn_to_apostrophe"].append(p[:, :, fq_t, fq_t - 1].mean(-1))
        rest2 = rest[rest >= 2]  # q = 1's previous token is position 0 itself
        cols["prev_elsewhere"].append(p[:, :, rest2, rest2 - 1].mean(-1))
    if not cols["bos_elsewhere"]:
        raise ValueError("no prompt has an apostrophe inside the first T tokens")
    m = {k: torch.stack(v).mean(0) for k, v in cols.items()}
    rows = [
        {
            "layer": l,
            "head": h,
            **{k: float(t[l, h]) for k, t in m.items()},
            "score": float(m["attn_to_apostrophe"][l, h] - m["prev_elsewhere"][l, h]),
        }
        for l in range(L)
        for h in range(H)
    ]
    return pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# downstream proxies (Table 3)
# ------------------------------------------------------------------------------------------------


def paired_nll(model, tok, texts, max_len: int, batch_size: int = 8) -> dict:
    """Mean next-token loss (nats/token) with and without a leading ⟨bos⟩ over exactly the same
    targets: text tokens 1..n-1 of each text's first ``n = max_len - 1`` tokens (with ⟨bos⟩ the
    prediction of text token 0 is dropped, since without ⟨bos⟩ nothing predicts it)."""
    from ..eval import token_nll

    with_bos = token_nll(model, tok, texts, True, max_len=max_len, batch_size=batch_size, progress=False)
    without = token_nll(model, tok, texts, False, max_len=max_len - 1, batch_size=batch_size, progress=False)
    a = np.concatenate([x[1:] for x in with_bos])
    b = np.concatenate(without)
    if len(a) != len(b):
        raise RuntimeError("with/without ⟨bos⟩ scored different numbers of tokens")
    per_text = [
        {"n_tokens": len(x) - 1, "nll_bos": float(x[1:].mean()), "nll_no_bos": float(y.mean())}
        for x, y in zip(with_bos, without, strict=True)
        if len(y)
    ]  # per text: the unit the claims' interval resamples
    return {"nll_bos": float(a.mean()), "nll_no_bos": float(b.mean()), "n_tokens": int(len(a)), "per_text": per_text}


FILLER = (
    "The river ran past the old mill and on towards the sea.",
    "A gull circled twice above the harbour.",
    "Morning light fell across the empty square.",
    "The market opened late because of the rain.",
    "Somebody had left a bicycle leaning against the wall.",
    "Bells rang from the church on the hill.",
    "The baker stacked fresh loaves in the window.",
    "Two dogs slept in the shade of a cart.",
)


def passkey_prompts(n: int, n_filler: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` synthetic passkey-retrieval items ``(prompt, answer)``: a 5-digit key hidden at a random
    depth among ``n_filler`` filler sentences, then asked for at the end."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        key = str(int(rng.integers(10000, 100000)))
        filler = [FILLER[int(i)] for i in rng.integers(0, len(FILLER), n_filler)]
        at = int(rng.integers(0, n_filler + 1))
        body = filler[:at] + [f"The pass key is {key}. Remember it. {key} is the pass key."] + filler[at:]
        prompt = (
            "There is a pass key hidden inside a lot of irrelevant text. Find it and memorise it.\n"
            + " ".join(body)
            + "\nWhat is the pass key? The pass key is"
        )
        items.append((prompt, " " + key))
    return items


@torch.no_grad()
def passkey_accuracy(model, tok, items, bos: bool) -> dict:
    """Greedy exact match, computed teacher-forced in one forward per item (the greedy decode is
    correct iff every answer token is the argmax given the correct prefix); also the mean
    log-probability of the answer."""
    from ..eval import final_hidden, logits_from_hidden

    dev = next(model.parameters()).device
    correct, logp, lengths = [], [], []
    for prompt, ans in items:
        ctx, cont = encode(tok, prompt, bos), encode(tok, ans, False)
        ids = torch.tensor([ctx + cont], device=dev)
        h = final_hidden(model, ids)[0, len(ctx) - 1 : len(ctx) + len(cont) - 1]
        lp = logits_from_hidden(model, h).log_softmax(-1)
        tgt = torch.tensor(cont, device=dev)
        correct.append(bool((lp.argmax(-1) == tgt).all()))
        logp.append(float(lp.gather(-1, tgt[:, None]).sum()))
        lengths.append(len(ctx) + len(cont))
    return {
        "acc": float(np.mean(correct)),
        "answer_logprob": float(np.mean(logp)),
        "n": len(items),
        "mean_tokens": float(np.mean(lengths)),
        "correct": correct,
        "tokens": lengths,
    }


# ------------------------------------------------------------------------------------------------
# pretraining headlab models (Fig. 5, Fig. 7, Table 2)
# ------------------------------------------------------------------------------------------------

GLOBAL_DOC = -1  # doc id of a token every query may attend to (a fixed ⟨bos⟩ under intra-document masking)


def doc_mask(T: int, doc_ids: torch.Tensor | None, device=None) -> torch.Tensor:
    """Boolean ``[batch|1, 1, q, k]`` causal mask; with ``doc_ids`` a query sees its own document's
    earlier tokens plus every token whose doc id is ``GLOBAL_DOC``."""
    m = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]
    if doc_ids is not None:
        same = doc_ids[:, None, :, None] == doc_ids[:, None, None, :]
        m = m & (same | (doc_ids == GLOBAL_DOC)[:, None, None, :])
    return m


class SinkAttention(Attention):
    """headlab's attention with ``doc_mask``: intra-document masking that keeps a fixed ⟨bos⟩
    visible to every document. Same parameters and hook points as ``headlab.nn.Attention``."""

    def forward(self, x, cos=None, sin=None, doc_ids=None, need_weights: bool = False):
        if doc_ids is None:
            return super().forward(x, cos, sin, None, need_weights)
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_k, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_v, self.d_head).transpose(1, 2)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = k.index_select(1, self.k_map), v.index_select(1, self.v_map)
        mask = doc_mask(T, doc_ids, x.device)
        weights = None
        if self.cfg.attn_impl == "eager" or need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            z = weights @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        z = z.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)
        return self.o_proj(z), weights


@dataclass(frozen=True)
class Variant:
    """How training windows are built. ``bos``: a ⟨bos⟩ fixed at position 0 of every window;
    ``intra_doc``: block-diagonal causal masking between the ⟨eos⟩-separated packed documents."""

    bos: bool
    intra_doc: bool

    @property
    def name(self) -> str:
        return (
            f"{'fixed ⟨bos⟩' if self.bos else 'no ⟨bos⟩'}, {'intra-doc mask' if self.intra_doc else 'causal packing'}"
        )


VARIANTS = {
    "nobos_causal": Variant(False, False),
    "nobos_intradoc": Variant(False, True),
    "bos_causal": Variant(True, False),
    "bos_intradoc": Variant(True, True),
}


class PackedWindows:
    """Random training windows ``(x, (y, doc_ids))`` from a packed, ⟨eos⟩-separated token stream.

    With ``variant.bos`` the window is ``[⟨bos⟩] + ctx - 1`` stream tokens (⟨bos⟩ gets doc id
    ``GLOBAL_DOC``); otherwise ``ctx`` stream tokens starting anywhere. ``doc_ids`` is returned
    only for intra-document masking (else None). Reproducible per step."""

    def __init__(
        self,
        tokens: np.ndarray,
        doc_index: np.ndarray,
        batch: int,
        ctx: int,
        variant: Variant,
        seed: int = 0,
        device="cpu",
        bos_id: int = ByteTokenizer.bos_token_id,
    ):
        self.t = torch.as_tensor(tokens, dtype=torch.long)
        self.d = torch.as_tensor(doc_index, dtype=torch.long)
        self.batch, self.ctx, self.variant, self.seed, self.device, self.bos_id = (
            batch,
            ctx,
            variant,
            seed,
            device,
            bos_id,
        )

    def __call__(self, step: int):
        n_text = self.ctx - int(self.variant.bos)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        ix = torch.randint(len(self.t) - n_text - 1, (self.batch,), generator=g)
        span = ix[:, None] + torch.arange(n_text + 1)
        toks, docs = self.t[span], self.d[span]
        x, y, dx = toks[:, :-1], toks[:, 1:], docs[:, :-1]
        if self.variant.bos:
            x = torch.cat([torch.full((self.batch, 1), self.bos_id), x[:, :]], 1)[:, : self.ctx]
            y = torch.cat([toks[:, :1], y], 1)[:, : self.ctx]
            dx = torch.cat([torch.full((self.batch, 1), GLOBAL_DOC), dx], 1)[:, : self.ctx]
        doc_ids = dx.to(self.device) if self.variant.intra_doc else None
        return x.to(self.device), (y.to(self.device), doc_ids)


def doc_start_windows(tokens: np.ndarray, doc_index: np.ndarray, n_text: int, n: int) -> torch.Tensor:
    """``[n', n_text]`` the first ``n_text`` tokens of the first ``n`` documents that are long enough
    (one document per window, so masking variants do not matter at evaluation)."""
    out = []
    starts = np.flatnonzero(np.r_[True, doc_index[1:] != doc_index[:-1]])
    for s in starts:
        if s + n_text <= len(tokens) and (doc_index[s : s + n_text] == doc_index[s]).all():
            out.append(tokens[s : s + n_text])
        if len(out) == n:
            break
    if not out:
        raise ValueError(f"no document has {n_text} tokens")
    return torch.as_tensor(np.stack(out), dtype=torch.long)


@torch.no_grad()
def evaluate_first_position(
    model, windows: torch.Tensor, bos: bool, eps_list=(0.3, 0.8), bos_id: int = ByteTokenizer.bos_token_id
) -> dict:
    """Sink metrics and loss of a headlab model on document-start text ``windows`` ``[n, m]``: fed as
    ``[⟨bos⟩] + text[:m-1]`` (m tokens) or ``text[:m-1]`` (m - 1 tokens). The loss is over the same
    targets either way, text tokens 1..m-1 (predicting the first text token needs a ⟨bos⟩)."""
    dev = next(model.parameters()).device
    x = torch.cat([torch.full((len(windows), 1), bos_id), windows], 1) if bos else windows
    x = x[:, :-1].to(dev)
    scores = first_position_scores(attention_patterns(model, x))
    logits = model(x).logits.float()
    off = int(bos)
    lg = logits[:, off:, :]  # predictions made at text positions 0..T-3
    tgt = windows[:, 1 : lg.shape[1] + 1].to(dev)
    loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1)).item()
    return {**sink_metrics(scores, eps_list), "loss": loss}


@dataclass
class PretrainSpec:
    ctx: int
    tokens_per_step: int
    steps: int
    variant: Variant
    model: dict = field(default_factory=dict)  # headlab.nn.Config fields
    lr: float = 3e-3
    warmup: int = 20
    eval_every: int = 25
    seed: int = 0
    amp: bool = False  # bf16 autocast on CUDA

    @property
    def batch(self) -> int:
        return max(1, self.tokens_per_step // self.ctx)


def build_model(spec: PretrainSpec, vocab_size: int = ByteTokenizer.vocab_size) -> HeadlabLM:
    torch.manual_seed(spec.seed)
    cfg = Config(vocab_size=vocab_size, max_seq_len=max(spec.ctx, 8), **spec.model)
    return HeadlabLM(cfg, attention_cls=SinkAttention)


def pretrain(
    spec: PretrainSpec,
    train_stream: tuple[np.ndarray, np.ndarray],
    eval_windows: torch.Tensor,
    eval_bos: bool | None = None,
    eps_list=(0.3, 0.8),
    device="cpu",
    val_batches: int = 2,
    val_stream: tuple[np.ndarray, np.ndarray] | None = None,
    desc: str = "pretrain",
):
    """Train one headlab model; every ``eval_every`` steps log the sink metrics and loss on
    ``eval_windows`` (fed with ⟨bos⟩ iff ``eval_bos``, default: as trained) and, when
    ``val_stream`` is given, the validation loss on held-out windows built like the training ones.
    Returns ``(model, log DataFrame)``; the model is left in eval mode on ``device``."""
    model = build_model(spec).to(device)
    get = PackedWindows(
        *train_stream, batch=spec.batch, ctx=spec.ctx, variant=spec.variant, seed=spec.seed, device=device
    )
    val = None
    if val_stream is not None:
        vb = PackedWindows(
            *val_stream, batch=spec.batch, ctx=spec.ctx, variant=spec.variant, seed=10_000 + spec.seed, device=device
        )
        val = [vb(i) for i in range(val_batches)]
    eval_bos = spec.variant.bos if eval_bos is None else eval_bos
    use_amp = spec.amp and torch.device(device).type == "cuda"

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def loss_fn(m, x, yd):
        y, doc_ids = yd
        with amp():
            return m(x, labels=y, doc_ids=doc_ids).loss, {}

    def eval_fn(m):
        with amp():
            row = evaluate_first_position(m, eval_windows, eval_bos, eps_list)
            if val is not None:
                row["val_loss"] = float(np.mean([loss_fn(m, x, yd)[0].item() for x, yd in val]))
        return row

    tc = TrainConfig(steps=spec.steps, lr=spec.lr, warmup=spec.warmup, eval_every=spec.eval_every, seed=spec.seed)
    log = pd.DataFrame(train(model, get, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc=desc))
    log.insert(0, "ctx", spec.ctx)
    log.insert(1, "tokens_seen", log["step"] * spec.batch * spec.ctx)
    return model.eval(), log


def variant_table(model, windows: torch.Tensor, variant_key: str, eps_list=(0.3, 0.8)) -> pd.DataFrame:
    """Table 2 rows for one trained variant: evaluated with and without a leading ⟨bos⟩."""
    v = VARIANTS[variant_key]
    rows = []
    for bos in (True, False):
        r = evaluate_first_position(model, windows, bos, eps_list)
        rows.append({"variant": variant_key, "train_bos": v.bos, "intra_doc": v.intra_doc, "eval_bos": bos, **r})
    return pd.DataFrame(rows)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    from scipy.stats import spearmanr

    if np.std(x) == 0 or np.std(y) == 0:  # scipy would warn and return nan
        return float("nan")
    return float(spearmanr(x, y).statistic)
