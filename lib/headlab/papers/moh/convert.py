"""Converting a pretrained model (SmolLM2) to MoH with the parameter-free query-norm router, by hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from headlab import data, heads

from .checks import activation_counts
from .layer import EPS, topk_mask

# ----------------------------------------------------------------------------------------------
# Converting a pretrained model (SmolLM2) with the parameter-free query-norm router, by hooks
# ----------------------------------------------------------------------------------------------


CONVERSION_ROUTERS = ("query_norm", "inverse", "random", "static", "calibrated", "oracle")


@dataclass
class Calibration:
    """Per-layer, per-head statistics of the unconverted model on calibration windows (not the evaluation
    ones): the pre-RoPE query norm's mean and SD over tokens, and the mean ``z`` (o_proj input)."""

    norm_mean: torch.Tensor  # [layer, head]
    norm_sd: torch.Tensor  # [layer, head]
    z_mean: torch.Tensor  # [layer, head, d_head]
    tokens: int


@torch.no_grad()
def calibrate(model, ids: torch.Tensor, batch: int = 4) -> Calibration:
    """``Calibration`` from windows ``ids`` ``[n, seq]`` (token-weighted over all windows)."""
    hd = heads.Heads(model)
    h, dh, L = hd.n_heads, hd.d_head, hd.n_layers
    s1, s2, zs, n = torch.zeros(L, h), torch.zeros(L, h), torch.zeros(L, h, dh), 0
    with heads.projections(hd, ("q",)) as q:
        for s in range(0, len(ids), batch):
            x = ids[s : s + batch].to(model.device)
            with heads.capture(model, z=True) as cache:
                model(input_ids=x)
            for l in range(L):
                norms = q["q", l].float().view(*x.shape, h, dh).norm(dim=-1).flatten(0, 1).cpu()  # [tokens, head]
                s1[l] += norms.sum(0)
                s2[l] += norms.pow(2).sum(0)
                zs[l] += cache.z[l].float().flatten(0, 1).sum(0).cpu()  # z [batch, pos, head, d_head]
            n += x.numel()
    mean = s1 / n
    return Calibration(mean, (s2 / n - mean**2).clamp_min(0).sqrt(), zs / n, n)


def _output_gram(hd: heads.Heads, l: int) -> torch.Tensor:
    """``[head, d_head, d_head]`` W_O^h.T W_O^h, so that ||z_h W_O^h||^2 = z_h G_h z_h (the oracle's score)."""
    w = hd.o_proj(l).weight.float()  # [d_model, head * d_head]
    w = w.view(w.shape[0], hd.n_heads, hd.d_head).permute(1, 0, 2)  # [head, d_model, d_head]
    return w.transpose(1, 2) @ w


def router_scores(
    router: str, q: torch.Tensor, z: torch.Tensor, l: int, n_shared: int, calib=None, gram=None
) -> tuple[torch.Tensor, bool]:
    """The routed heads' scores ``[batch, pos, E]`` for ``router`` and whether the top-K is the largest.
    ``q`` ``[batch, pos, head, d_head]`` pre-RoPE queries, ``z`` the o_proj input of the same layer."""
    qn = q[:, :, n_shared:].float().norm(dim=-1)  # [batch, pos, E]
    if router in ("query_norm", "inverse"):
        return (qn / qn.std(-1, keepdim=True).clamp_min(EPS)).softmax(-1), router == "query_norm"
    if router == "static":  # the same heads for every token: the largest mean norm over calibration tokens
        return calib.norm_mean[l, n_shared:].to(qn.device).expand_as(qn), True
    if router == "calibrated":  # each head's norm z-scored over calibration tokens
        c = calib.norm_mean[l, n_shared:].to(qn.device), calib.norm_sd[l, n_shared:].to(qn.device)
        return (qn - c[0]) / c[1].clamp_min(EPS), True
    if router == "oracle":  # ||z_h W_O^h|| per token: what each head adds to the residual stream
        zr = z[:, :, n_shared:].float()
        return torch.einsum("bthd,hde,bthe->bth", zr, gram[n_shared:], zr).clamp_min(0).sqrt(), True
    raise ValueError(f"router must be one of {CONVERSION_ROUTERS}, not {router!r}")


@contextlib.contextmanager
def query_norm_routing(
    model,
    n_shared: int,
    top_k: int,
    router: str = "query_norm",
    seed: int = 0,
    ste: bool = True,
    record: bool = False,
    calib: Calibration | None = None,
    ablation: str = "zero",
    layers=None,
):
    """Route a pretrained (HF llama-style) model's heads per token without touching its attention code:
    a forward hook on each ``q_proj`` keeps the queries, and a ``headlab.heads.intervene`` edit at the
    ``o_proj`` input multiplies each head's output by its gate. Heads ``0..n_shared-1`` are always on;
    of the rest, the ``top_k`` with the largest query norm (``query_norm``), the smallest
    (``inverse``), uniformly random ones (``random``, seeded), the largest calibration-mean norm
    (``static``), the largest per-head z-scored norm (``calibrated``) or the largest ||z_h W_O^h||
    (``oracle``) are on. Dropped heads are zeroed (``ablation="zero"``) or set to their calibration mean
    (``"mean"``); ``layers`` converts only those layers (default all). Gates are binary; with
    ``ste`` and grad enabled the backward pass goes through the softmax of the std-normalised norms
    (query-norm routers). Yields a dict whose ``"masks"`` (if ``record``) collects ``[B, T, h]`` per layer."""
    if router not in CONVERSION_ROUTERS:
        raise ValueError(f"router must be one of {CONVERSION_ROUTERS}, not {router!r}")
    if ablation not in ("zero", "mean"):
        raise ValueError(f"ablation must be 'zero' or 'mean', not {ablation!r}")
    if calib is None and (router in ("static", "calibrated") or ablation == "mean"):
        raise ValueError(f"router {router!r} with {ablation} ablation needs a Calibration (moh.calibrate)")
    hd = heads.Heads(model)
    h, dh = hd.n_heads, hd.d_head
    E = h - n_shared
    if not 1 <= top_k <= E:
        raise ValueError(f"top_k={top_k} must be in 1..{E}")
    layers = list(range(hd.n_layers)) if layers is None else list(layers)
    gen = torch.Generator().manual_seed(seed)
    state = {"masks": {}}
    grams = {l: _output_gram(hd, l) for l in layers} if router == "oracle" else {}

    def edit(view):
        q = queries.pop(("q", view.layer))
        B, T = q.shape[:2]
        if router == "random":
            sel = topk_mask(torch.rand(B, T, E, generator=gen).to(q.device), top_k)
            r = sel.to(view.z.dtype)
        else:
            gram = grams[view.layer].to(q.device) if grams else None
            score, largest = router_scores(router, q.view(B, T, h, dh), view.z, view.layer, n_shared, calib, gram)
            sel = topk_mask(score, top_k, largest=largest)
            r = sel.to(view.z.dtype)
            if ste and torch.is_grad_enabled() and router in ("query_norm", "inverse"):
                r = r + ((score - score.detach()) * sel).to(view.z.dtype)
        g = torch.cat([torch.ones(B, T, n_shared, dtype=r.dtype, device=r.device), r], -1)
        if record:
            state["masks"].setdefault(view.layer, []).append(g.detach().ne(0).cpu())
        z = view.z * g[..., None]
        if ablation == "mean":
            z = z + (1 - g.detach())[..., None] * calib.z_mean[view.layer].to(z)
        return z

    with heads.projections(hd, ("q",), layers) as queries, heads.intervene(model, edit, layers=layers):
        yield state


def eval_texts(tok, texts: Sequence[str], seq: int, n: int) -> torch.Tensor:
    """``n`` token windows of exactly ``seq`` ids (no bos) from texts long enough."""
    from headlab.models import encode

    rows = [ids[:seq] for ids in (encode(tok, t, False) for t in texts) if len(ids) >= seq]
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} texts have {seq} tokens; need {n}")
    return torch.tensor(rows[:n])


@torch.no_grad()
def window_nll(model, ids: torch.Tensor, batch: int = 4) -> float:
    """Mean next-token loss (nats) over windows [n, seq] (full lm_head: windows are short)."""
    tot = cnt = 0.0
    for s in range(0, len(ids), batch):
        x = ids[s : s + batch].to(model.device)
        out = model(input_ids=x, labels=x)
        n = x[:, 1:].numel()
        tot += float(out.loss) * n
        cnt += n
    return tot / cnt


def eval_and_tune_windows(tok, texts: Sequence[str], seq: int, n_eval: int, n_tune: int):
    """``n_eval + n_tune`` windows of ``seq`` tokens (``eval_texts``): the first ``n_eval`` ``[window, seq]``
    for evaluation, the rest for continued tuning."""
    windows = eval_texts(tok, texts, seq, n_eval + n_tune)
    return windows[:n_eval], windows[n_eval:]


def conversion_table(
    model, ids: torch.Tensor, budgets: dict[str, tuple[int, int]], random_seeds=(0, 1, 2)
) -> pd.DataFrame:
    """Table 4 analogue at step 0: perplexity of the original model and, per head budget, of the
    query-norm, random (several seeds) and inverse routers."""
    rows = [{"budget": "9/9", "router": "original", "seed": -1, "active": 1.0, "nll": window_nll(model, ids)}]
    h = heads.Heads(model).n_heads
    for name, (hs, k) in budgets.items():
        for router, seeds in (("query_norm", [0]), ("random", list(random_seeds)), ("inverse", [0])):
            for s in seeds:
                with query_norm_routing(model, hs, k, router, seed=s, ste=False):
                    rows.append(
                        {
                            "budget": name,
                            "router": router,
                            "seed": s if router == "random" else -1,
                            "active": (hs + k) / h,
                            "nll": window_nll(model, ids),
                        }
                    )
    df = pd.DataFrame(rows)
    df["ppl"] = np.exp(df["nll"])
    return df


def continue_tune(
    model,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    n_shared: int,
    top_k: int,
    steps: int,
    lr: float = 2e-5,
    batch: int = 2,
    eval_at: Sequence[int] = (),
    router: str = "query_norm",
    seed: int = 0,
    nll=None,
) -> pd.DataFrame:
    """A few steps of continued training of the converted model (``router``; query-norm: binary gates with
    the straight-through gradient; ``"none"``: the unrouted model, the control; all weights trained, AdamW).
    Returns eval NLL (``nll(model, eval_ids)``, default ``window_nll``) at ``eval_at`` steps. Restores the
    model's weights at the end."""
    nll = nll or window_nll
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rows = []
    try:
        routed = (
            contextlib.nullcontext()
            if router == "none"
            else query_norm_routing(model, n_shared, top_k, router, seed=seed, ste=True)
        )
        with routed:
            for step in range(steps + 1):
                if step in eval_at:
                    model.eval()
                    rows.append(
                        {"step": step, "tokens": step * batch * train_ids.shape[1], "nll": nll(model, eval_ids)}
                    )
                if step == steps:
                    break
                model.train()
                i = (step * batch) % len(train_ids)
                x = train_ids[i : i + batch].to(model.device)
                loss = model(input_ids=x, labels=x).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
    finally:
        model.load_state_dict(saved)
        model.eval()
    df = pd.DataFrame(rows)
    df["ppl"] = np.exp(df["nll"])
    return df


def tuning_curve(
    model,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    t4: pd.DataFrame,
    budget: str,
    heads_k: tuple[int, int],
    steps: int,
    lr: float,
    batch: int,
) -> pd.DataFrame:
    """Fig. 2: ``continue_tune`` of the query-norm conversion at ``budget`` (``heads_k`` = its (h_s, K)) for
    ``steps`` steps, evaluated at the end, after a step-0 row taken from Table 4 (``t4``'s query-norm row of that
    budget); ``original_ppl`` is the unconverted model's perplexity."""
    hs, k = heads_k
    f2 = continue_tune(model, train_ids, eval_ids, hs, k, steps, lr=lr, batch=batch, eval_at=[steps])
    start = t4[(t4.budget == budget) & (t4.router == "query_norm")]
    f2 = pd.concat(
        [pd.DataFrame({"step": [0], "tokens": [0], "nll": start.nll.values, "ppl": start.ppl.values}), f2],
        ignore_index=True,
    )
    f2["original_ppl"] = t4.ppl[t4.router == "original"].iloc[0]
    return f2


def released_routing(model, tok, n_shared: int = 16, top_k: int = 8) -> tuple[pd.DataFrame, list[int]]:
    """The released MoH-LLaMA3-8B (paper profile): NLL on 16 windows of 256 tokens of shipped prose without
    routing and with the query-norm router (``n_shared`` shared heads + the top ``top_k`` of the others), and the
    distinct numbers of active heads per token per layer under routing."""
    ids = eval_texts(tok, [p["text"] for p in data.paragraphs("prose", min_chars=2000, max_chars=8000)], 256, 16)
    hub_rows = [{"routing": "none (all 32 heads)", "nll": window_nll(model, ids)}]
    with query_norm_routing(model, n_shared, top_k, "query_norm", ste=False, record=True) as st:
        hub_rows.append({"routing": "query norm, 16 shared + top-8 of 16", "nll": window_nll(model, ids)})
    counts = activation_counts({l: {"mask": torch.cat(v)} for l, v in st["masks"].items()})
    return pd.DataFrame(hub_rows), sorted({c for v in counts.values() for c in v})
