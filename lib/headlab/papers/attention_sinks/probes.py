"""Perturbation spread (Fig. 2), the mixing simulation (Fig. 1), value norms (Fig. 4), downstream proxies (Table 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ... import heads
from ...models import encode
from .patterns import APOSTROPHES, _body

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

    from ...data import paragraphs

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
    from ...eval import token_nll

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
    from ...eval import final_hidden, logits_from_hidden

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


# K4: the ⟨bos⟩ model's perturbation spread over more (sentence, word, replacement) edits than Fig. 2's one,
# each a near-synonym swap in an ordinary sentence; the unit the K4 interval resamples
EDIT_PAIRS = [
    (
        "The old harbour town was quiet in winter, and most of the fishing boats stayed tied up along the stone quay until spring.",
        "quiet",
        "calm",
    ),
    (
        "She opened the heavy wooden door slowly and stepped into a long hall lined with portraits of the family's ancestors.",
        "slowly",
        "gently",
    ),
    (
        "The scientists made a large discovery in the cave: bones of an animal that had lived there thousands of years ago.",
        "large",
        "big",
    ),
    (
        "After the storm the village was very dark, because the power lines along the valley road had been torn down by the wind.",
        "dark",
        "black",
    ),
    (
        "The young teacher was happy to see that every student in the class had finished reading the novel before the holidays.",
        "happy",
        "glad",
    ),
    (
        "Our neighbours bought a small house near the river, with a garden where they grow tomatoes, beans and several kinds of herbs.",
        "small",
        "little",
    ),
    (
        "The train was fast and comfortable, and the journey from the capital to the coast took less than three hours in total.",
        "fast",
        "quick",
    ),
    (
        "He started to shout when he saw the smoke rising above the barn, and within minutes the whole farm was awake and running.",
        "shout",
        "yell",
    ),
    (
        "The museum holds a rare collection of ancient coins, many of which were found by farmers ploughing their fields in the north.",
        "rare",
        "unusual",
    ),
    (
        "The committee will begin the meeting at nine o'clock, and the first item on the agenda is the budget for the coming year.",
        "begin",
        "start",
    ),
    (
        "A strong wind blew across the open plain all night, and by morning the tents of the travellers had been scattered everywhere.",
        "strong",
        "powerful",
    ),
    (
        "The children were scared of the dog at first, but after a few days they were feeding it and taking it for walks in the park.",
        "scared",
        "afraid",
    ),
    (
        "The mountain road is difficult to drive in the rain, so most visitors take the bus that leaves the station every morning.",
        "difficult",
        "hard",
    ),
    (
        "The doctor said the injury was minor, and that the player would be able to return to training after a week of rest.",
        "minor",
        "small",
    ),
    (
        "They chose a simple design for the new bridge, with three stone arches that match the older buildings of the town centre.",
        "simple",
        "plain",
    ),
    (
        "The river was wide at this point, and the ferry needed almost twenty minutes to carry passengers from one bank to the other.",
        "wide",
        "broad",
    ),
    (
        "The writer lived in a tiny flat above a bakery, where he wrote his first three books by hand during the long winter nights.",
        "tiny",
        "small",
    ),
    (
        "The farmers were worried about the dry summer, since the wells in the valley had already fallen to their lowest level in years.",
        "worried",
        "anxious",
    ),
    (
        "The city built a modern library next to the main square, and it quickly became the busiest public building in the region.",
        "modern",
        "new",
    ),
]
