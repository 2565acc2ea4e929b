"""The pretrained-model experiments of ``notebooks/04_attention_sinks.ipynb``, one function per step: each runs
the models and returns the tidy frame the notebook saves (and a report it prints), so that a notebook cell reads
compute -> save CSV -> figure -> summary.

``loaded`` is always ``{name: (model, tokenizer)}``; ``scores``, ``kept`` and ``ids_fed`` are keyed by
``(model name, bos)`` as ``model_sink_scores`` returns them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from ... import data, heads, models
from .patterns import (
    attention_patterns,
    bos_label,
    chance_score,
    paired_prompt_ids,
    prompt_ids,
    row_entropy,
    sink_metrics,
    sink_scores,
)
from .probes import (
    apostrophe_head_search,
    apostrophe_positions,
    bos_value_norm_table,
    paired_nll,
    passkey_accuracy,
    passkey_prompts,
    perturbation_spread,
    value_norms,
)

PUBLISHED_T1 = {"Llama-3.1-8B": 45.97, "Llama-3.1-70B": 73.49, "Llama-3.1-405B": 78.29}  # paper, ε = 0.8


def trained_with_bos(name: str, tok) -> bool:
    """Whether model ``name`` was pretrained with a fixed ⟨bos⟩ (``models.bos_for``)."""
    return models.bos_for(name, tok)  # ⟨bos⟩ as the model was trained


# ------------------------------------------------------------------------------------------------ sink scores
def model_sink_scores(loaded: dict, texts: list[str], T: int, n_prompts: int, bos_model: str, keep: int = 4):
    """First-position scores of every model on the first ``n_prompts`` of ``texts``, with ⟨bos⟩ present and
    removed (``paired_prompt_ids``: ⟨bos⟩ + ``T-1`` text tokens vs the same ``T-1`` tokens alone).

    Returns three dicts keyed by ``(name, bos)``: ``scores`` ``[prompt, layer, head]``, ``ids_fed``
    ``[prompt, pos]`` and ``kept``, the full patterns ``[layer, prompt, head, q, k]`` of the first ``keep``
    prompts of ``bos_model`` (for Fig. 3; none for the other models)."""
    scores, ids_fed, kept = {}, {}, {}
    for name, (model, tok) in loaded.items():
        with_bos, without_bos = paired_prompt_ids(tok, texts, T)
        for bos, ids in ((True, with_bos[:n_prompts]), (False, without_bos[:n_prompts])):
            k = keep if name == bos_model else 0  # full patterns of a few prompts, for Fig. 3
            scores[name, bos], kept[name, bos] = sink_scores(model, ids, keep=k)
            ids_fed[name, bos] = ids
    return scores, ids_fed, kept


def prompt_report(loaded: dict, ids_fed: dict, T: int) -> str:
    """Each model's heads and ⟨bos⟩ convention, the first ids fed in both conditions, and the chance level."""
    lines = []
    for name, (model, tok) in loaded.items():
        lines.append(f"{name}: {heads.Heads(model)}; trained with a fixed ⟨bos⟩: {trained_with_bos(name, tok)}")
        for bos in (True, False):
            ids = ids_fed[name, bos]
            first = ids[0, :6].tolist()
            lines.append(
                f"  {bos_label(bos)}: {tuple(ids.shape)} ids, prompt 0 starts {first} = {[tok.decode([i]) for i in first]}"
            )
    lines.append(f"chance level (uniform causal attention) at T={T}: {chance_score(T):.3f}")
    return "\n".join(lines)


def per_prompt_sink_rates(scores: dict, eps, ids_fed: dict | None = None) -> pd.DataFrame:
    """One row per (model, bos, prompt): its sink rates at every ε and mean first-position score (the unit the
    claims' intervals resample), query row 0 included (Gu et al.'s code); with ``ids_fed`` (``(name, bos)`` ->
    ``[prompt, pos]``, for the number of query rows) also with row 0 excluded (``*_excl`` columns)."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "bos": bos,
                "prompt": i,
                **sink_metrics(sc[i : i + 1], eps, None if ids_fed is None else ids_fed[name, bos].shape[1]),
            }
            for (name, bos), sc in scores.items()
            for i in range(len(sc))
        ]
    )


def run_params(loaded: dict, profile: str, bos_model: str, eps, T: int, eval_T: int) -> pd.DataFrame:
    """The run's parameters the claims read back (``param``, ``value`` as strings), with each model's ⟨bos⟩
    convention and head counts."""
    params = {
        "profile": profile,
        "bos_model": bos_model,
        "eps": ",".join(f"{e:g}" for e in eps),
        "T": T,
        "eval_T": eval_T,
        "models": ",".join(loaded),
    }
    for name, (model, tok) in loaded.items():
        hd = heads.Heads(model)
        params |= {
            f"trained_with_bos:{name}": trained_with_bos(name, tok),
            f"n_heads:{name}": hd.n_heads,
            f"n_kv_heads:{name}": hd.n_kv_heads,
        }
    return pd.DataFrame({"param": list(params), "value": [str(v) for v in params.values()]})


# --------------------------------------------------------------------------------------- Fig. 2 perturbation
def perturbation_frames(loaded: dict, text: str, old: str, new: str) -> tuple[pd.DataFrame, dict]:
    """``perturbation_spread`` of every model with and without ⟨bos⟩: the per-(layer, token) changes of all
    models in one frame (column ``model``) and the edit's metadata keyed by ``(name, bos)``."""
    pert, meta = [], {}
    for name, (model, tok) in loaded.items():
        for bos in (True, False):
            df, meta[name, bos] = perturbation_spread(model, tok, text, old, new, bos)
            pert.append(df.assign(model=name))
    return pd.concat(pert, ignore_index=True), meta


def perturbation_report(pert: pd.DataFrame, meta: dict) -> str:
    """Per model: where the edit is, the last layer's mean change with vs without ⟨bos⟩, and the share of layers
    where the change is larger without ⟨bos⟩."""
    lines = []
    for name in pert.model.unique():
        d = pert[pert.model == name]
        per_layer = d.groupby(["bos", "layer"]).rel_change.mean().unstack(0)
        L = per_layer.index.max()
        larger_without = float((per_layer[False] > per_layer[True]).mean())
        m = meta[name, True]
        lines.append(
            f"{name}: edit at token {m['edit_start']}, {m['n_after']} later tokens; last layer "
            f"{per_layer.loc[L, True]:.3f} (⟨bos⟩) vs {per_layer.loc[L, False]:.3f} (no ⟨bos⟩), ratio "
            f"{per_layer.loc[L, False] / per_layer.loc[L, True]:.2f}; larger without ⟨bos⟩ at "
            f"{100 * larger_without:.0f}% of layers"
        )
    return "\n".join(lines)


def perturbation_pairs(model, tok, pairs: list[tuple[str, str, str]], name: str) -> pd.DataFrame:
    """The mean change over the tokens after the edit, per layer, of every (sentence, old, new) pair with and
    without ⟨bos⟩: columns layer, rel_change, model, pair, bos (K4's units)."""
    rows = []
    for k, (text, old, new) in enumerate(pairs):
        for bos in (True, False):
            df, _ = perturbation_spread(model, tok, text, old, new, bos)
            rows.append(df.groupby("layer", as_index=False).rel_change.mean().assign(model=name, pair=k, bos=bos))
    return pd.concat(rows, ignore_index=True)


def pair_ratio_report(pairs: pd.DataFrame, name: str) -> str:
    """Geometric mean, range and sign count of the per-pair last-layer ratio without / with ⟨bos⟩."""
    last = pairs[pairs.layer == pairs.layer.max()].pivot(index="pair", columns="bos", values="rel_change")
    r = last[False] / last[True]
    return (
        f"{name}, {len(r)} (sentence, edit) pairs: last-layer ratio without / with ⟨bos⟩ geo-mean "
        f"{np.exp(np.log(r).mean()):.2f}, range {r.min():.2f}–{r.max():.2f}, > 1 in {int((r > 1).sum())}/{len(r)} pairs"
    )


# ------------------------------------------------------------------------------------ Fig. 3 attention maps
def attention_maps(tok, name: str, scores: dict, kept: dict, ids_fed: dict, n_heads: int, n: int) -> pd.DataFrame:
    """Attention cells of the ``n_heads`` heads of model ``name`` with the highest mean first-position score
    (with ⟨bos⟩), on prompt 0's first ``n`` tokens, with ⟨bos⟩ and without: one row per (head, bos, q, k ≤ q)
    with the head's mean score and mean row entropy over the kept prompts."""
    mean_score = scores[name, True].mean(0)  # [layer, head]
    top_heads = [divmod(int(i), mean_score.shape[1]) for i in torch.topk(mean_score.flatten(), n_heads).indices]
    cells = []
    for (l, h), bos in itertools.product(top_heads, (True, False)):
        pat = kept[name, bos][l, 0, h, :n, :n]  # prompt 0's first n tokens, [q, k]
        lab = [tok.decode([t]).replace("\n", "⏎") for t in ids_fed[name, bos][0, :n].tolist()]
        head = dict(model=name, layer=l, head=h, bos=bos, score=scores[name, bos][:, l, h].mean().item())
        head["row_entropy"] = row_entropy(kept[name, bos][l, :, h]).mean().item()
        cells += [
            head | dict(q=q, k=k, weight=pat[q, k].item(), q_label=lab[q], k_label=lab[k])
            for q in range(n)
            for k in range(q + 1)
        ]
    return pd.DataFrame(cells)


# ------------------------------------------------------------------------ Fig. 4 apostrophe head, value norms
def fig4_tables(model, tok, ap_texts: list[str], T: int, ids, scores: torch.Tensor):
    """Fig. 4's four tables and the apostrophe positions ``fire`` (one list per apostrophe prompt).

    ``apostrophe_search``: every head ranked by ``apostrophe_head_search`` on ``ap_texts`` (with ⟨bos⟩);
    ``value_norms``: ``bos_value_norm_table`` of ``scores`` ``[prompt, layer, head]`` and the value norms on
    ``ids`` ``[prompt, pos]``; ``pattern``: the top apostrophe head's attention cells on the last 24 tokens up to
    the last apostrophe of the prompt with the most apostrophes (plus ⟨bos⟩); ``vnorm``: the value norms along
    prompt 0 of the three heads with the highest first-position score."""
    ap_ids, _ = prompt_ids(tok, ap_texts, T, bos=True)
    fire = [apostrophe_positions(tok, r.tolist()) for r in ap_ids]
    ap_pat = attention_patterns(model, ap_ids)  # [layer, prompt, head, q, k]
    search = apostrophe_head_search(ap_pat, fire)
    vnorm = value_norms(model, ids)  # [prompt, layer, head, pos]
    vtab = bos_value_norm_table(scores, vnorm)
    best = search.iloc[0]
    bl, bh = int(best["layer"]), int(best["head"])
    b = int(np.argmax([len(f) for f in fire]))  # the prompt with the most apostrophes
    last_fire = max(f for f in fire[b] if f < T)
    lo = max(0, last_fire - 23)
    span = [0] + list(range(max(1, lo), last_fire + 1))
    lab = [tok.decode([t]).replace("\n", "⏎") for t in ap_ids[b, span].tolist()]
    pat = ap_pat[bl, b, bh][span][:, span]
    pattern = pd.DataFrame(
        dict(layer=bl, head=bh, q=span[i], k=span[j], weight=pat[i, j].item(), q_label=lab[i], k_label=lab[j])
        for i in range(len(span))
        for j in range(i + 1)
    )
    lines = pd.DataFrame(  # value norms along prompt 0 of the three heads with the highest first-position score
        dict(layer=int(r.layer), head=int(r.head), score=r.score, pos=t, value_norm=v)
        for r in vtab.sort_values("score", ascending=False).head(3).itertuples()
        for t, v in enumerate(vnorm[0, int(r.layer), int(r.head)].tolist())
    )
    tables = {"apostrophe_search": search, "value_norms": vtab, "pattern": pattern, "vnorm": lines}
    return tables, fire


def fig4_report(tables: dict, fire: list[list[int]]) -> str:
    """The top apostrophe head's attention contrasts, and how small ⟨bos⟩'s value norm is in the sink heads."""
    best, vtab = tables["apostrophe_search"].iloc[0], tables["value_norms"]
    bl, bh = int(best["layer"]), int(best["head"])
    sh = vtab[vtab.score > 0.5]
    k9_share = float((sh.bos_value_norm < sh.median_value_norm).mean()) if len(sh) else float("nan")
    k9_layers = sh.layer.nunique()
    return (
        f"top apostrophe head L{bl} H{bh}: attention to a preceding apostrophe {best.attn_to_apostrophe:.2f} vs to an "
        f"ordinary previous token {best.prev_elsewhere:.2f}; attention to ⟨bos⟩ {best.bos_elsewhere:.2f} elsewhere vs "
        f"{best.bos_after_apostrophe:.2f} after an apostrophe ({sum(map(len, fire))} apostrophe queries in {len(fire)} prompts)\n"
        f"{len(sh)} heads (in {k9_layers} layers) with first-position score > 0.5: ⟨bos⟩ value norm below the median in "
        f"{100 * k9_share:.0f}% of them, smallest of all positions in {100 * float((sh.bos_rank == 0).mean()):.0f}%; "
        f"median ratio {sh.ratio.median():.2f} (query heads that share a KV head share their values)"
    )


# ---------------------------------------------------------------------------------- Table 1 and Table 3
def sink_metric_table(
    loaded: dict, scores: dict, eps, profile: str, T: int, ids_fed: dict | None = None
) -> pd.DataFrame:
    """The sink metric of every model with and without ⟨bos⟩ (``bos_as_trained``: the condition matches how it
    was pretrained), followed by the paper's Llama-3.1 values (ε = 0.8, T = 64, 170 prompts). With ``ids_fed``
    also with query row 0 excluded (``sink_<eps>_excl``; the paper's convention is not stated)."""
    t1 = []
    for name, (_model, tok) in loaded.items():
        for bos in (True, False):
            m = sink_metrics(scores[name, bos], eps, None if ids_fed is None else ids_fed[name, bos].shape[1])
            t1.append(
                {
                    "model": name,
                    "source": f"measured ({profile})",
                    "bos": bos,
                    "bos_as_trained": bos == trained_with_bos(name, tok),
                    "T": T,
                    "n_prompts": len(scores[name, bos]),
                    **{f"sink_{e:g}": round(m[f"sink_{e:g}"], 2) for e in eps},
                    "mean_score": round(m["mean_score"], 4),
                    **{k: round(v, 4 if k.startswith("mean") else 2) for k, v in m.items() if k.endswith("_excl")},
                }
            )
    for name, v in PUBLISHED_T1.items():
        t1.append(
            {
                "model": name,
                "source": "paper (published)",
                "bos": True,
                "bos_as_trained": True,
                "T": 64,
                "n_prompts": 170,
                "sink_0.8": v,
            }
        )
    return pd.DataFrame(t1)


def downstream_proxy(loaded: dict, nll_per_type: int, nll_max_len: int, n_items: int, n_filler: int, seed: int):
    """Table 3's offline proxy: the next-token loss with and without ⟨bos⟩ on ``nll_per_type`` shipped texts of
    every type (same targets in both conditions) and generated passkey retrieval (``n_items`` prompts with
    ``n_filler`` filler sentences, greedy exact match).

    Returns ``t3`` (model, task, metric, bos, value, n), the loss per text (``nll_per_text``) and the result per
    passkey item (``passkey_items``)."""
    t3, nll_rows, pk_rows = [], [], []
    items = passkey_prompts(n_items, n_filler, seed=seed)
    for name, (model, tok) in loaded.items():
        for tt in data.text_types():
            nll_texts = [p["text"] for p in data.paragraphs(tt, min_chars=600, n=nll_per_type, seed=seed)]
            r = paired_nll(model, tok, nll_texts, nll_max_len)
            t3 += [
                {"model": name, "task": f"NLL {tt}", "metric": "nats/token", "bos": bos, "value": v, "n": r["n_tokens"]}
                for bos, v in ((True, r["nll_bos"]), (False, r["nll_no_bos"]))
            ]
            nll_rows += [{"model": name, "text_type": tt, "text": i, **u} for i, u in enumerate(r["per_text"])]
        for bos in (True, False):
            r = passkey_accuracy(model, tok, items, bos)
            t3.append(
                {
                    "model": name,
                    "task": f"passkey (~{r['mean_tokens']:.0f} tokens)",
                    "metric": "accuracy",
                    "bos": bos,
                    "value": r["acc"],
                    "n": r["n"],
                }
            )
            pk_rows += [
                {"model": name, "item": i, "bos": bos, "correct": int(c), "tokens": t}
                for i, (c, t) in enumerate(zip(r["correct"], r["tokens"], strict=True))
            ]
    return pd.DataFrame(t3), pd.DataFrame(nll_rows), pd.DataFrame(pk_rows)


def table3_report(t3: pd.DataFrame) -> str:
    """The token-weighted mean loss and the passkey accuracy per model, with and without ⟨bos⟩."""
    nll = t3[t3.metric == "nats/token"].assign(w=lambda d: d["value"] * d["n"])
    nll_mean = (nll.groupby(["model", "bos"])["w"].sum() / nll.groupby(["model", "bos"])["n"].sum()).unstack()
    pk = t3[t3.metric == "accuracy"].pivot(index="model", columns="bos", values="value")
    return "\n".join(
        [
            "mean next-token loss (nats/token), columns = ⟨bos⟩ present:",
            nll_mean.round(3).to_string(),
            "passkey exact match, columns = ⟨bos⟩ present:",
            pk.round(3).to_string(),
        ]
    )
