"""Language: a byte-level LM with MoH attention on the shipped multi-domain corpus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from headlab import data as hdata
from headlab.nn import Attention, Config, HeadlabLM
from headlab.train import TrainConfig, train

from .checks import model_activated_fraction
from .instrument import collect_routing
from .layer import MoHSpec, balance_loss, moh, moh_layers

# ----------------------------------------------------------------------------------------------
# Language: a byte-level LM on the shipped multi-domain corpus
# ----------------------------------------------------------------------------------------------


@dataclass
class DomainData:
    train: np.ndarray  # token stream of every domain's training part
    val: dict[str, torch.Tensor]  # domain -> [n_windows, seq + 1]
    domains: list[str] = field(default_factory=list)


def domain_data(seq: int, val_windows: int = 8, val_fraction: float = 0.1, types=None) -> DomainData:
    """Split every text type 90/10 at the end of its stream; validation = evenly spaced windows."""
    types = types or hdata.text_types()
    train_parts, val = [], {}
    for t in types:
        toks, _ = hdata.corpus_tokens([t])
        tr, va = hdata.split_tokens(toks, val_fraction)
        train_parts.append(tr)
        starts = np.linspace(0, len(va) - seq - 2, val_windows).astype(int)
        val[t] = torch.tensor(np.stack([va[s : s + seq + 1] for s in starts]), dtype=torch.long)
    return DomainData(np.concatenate(train_parts), val, list(types))


def lm_variants() -> dict[str, MoHSpec | None]:
    return {"MHA": None, "MoH-75": MoHSpec(n_shared=2, top_k=4), "MoH-50": MoHSpec(n_shared=2, top_k=2)}


def lm_config(
    seq: int = 128, d: int = 128, n_layers: int = 2, n_heads: int = 8, d_head: int = 16, d_mlp: int | None = 256
) -> Config:
    return Config(
        vocab_size=hdata.ByteTokenizer.vocab_size,
        d_model=d,
        n_layers=n_layers,
        n_heads=n_heads,
        d_head=d_head,
        d_mlp=d_mlp,
        max_seq_len=seq,
    )


def build_lm(spec: MoHSpec | None, cfg: Config, seed: int = 0) -> HeadlabLM:
    torch.manual_seed(seed)
    return HeadlabLM(cfg, Attention if spec is None else moh(spec))


def domain_losses(model: HeadlabLM, dd: DomainData) -> dict[str, float]:
    model.eval()
    out = {}
    with torch.no_grad():
        for t, w in dd.val.items():
            w = w.to(model.device)
            out[t] = float(model(w[:, :-1], labels=w[:, 1:]).loss)
    out["all"] = float(np.mean([out[t] for t in dd.val]))
    return out


def train_lm(
    spec: MoHSpec | None,
    dd: DomainData,
    cfg: Config,
    *,
    steps: int = 250,
    batch: int = 16,
    lr: float = 3e-3,
    beta: float = 0.01,
    seed: int = 0,
    eval_every: int = 50,
    device="cpu",
) -> tuple[HeadlabLM, pd.DataFrame]:
    model = build_lm(spec, cfg, seed).to(device)
    get_batch = hdata.Batches(dd.train, batch, cfg.max_seq_len, seed=seed, device=device)

    def loss_fn(m, x, y):
        return m(x, labels=y).loss + beta * balance_loss(m), {}

    val_all = torch.cat(list(dd.val.values()))[:, :-1]  # every domain at once, like the training batches

    def eval_fn(m):
        row = {f"val_{k}": v for k, v in domain_losses(m, dd).items()}
        if moh_layers(m):
            with torch.no_grad():
                m(val_all.to(m.device))  # balance over the mixed validation set, not the last domain's forward
            row["laux_over_K"] = max(float(a.aux_loss) / a.K for a in moh_layers(m))
        return row

    tc = TrainConfig(steps=steps, lr=lr, warmup=max(steps // 20, 1), eval_every=eval_every, seed=seed)
    log = train(model, get_batch, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc="MoH LM" if spec else "MHA LM")
    return model, pd.DataFrame(log)


def run_lm(
    names: Sequence[str], dd: DomainData, cfg: Config, seeds: Sequence[int] = (0,), cache: dict | None = None, **kw
) -> dict:
    cache = {} if cache is None else cache
    variants = lm_variants()
    for name in names:
        for s in seeds:
            if (name, s) not in cache:
                cache[(name, s)] = train_lm(variants[name], dd, cfg, seed=s, **kw)
    return cache


def lm_summary(results: dict, dd: DomainData) -> pd.DataFrame:
    """Long table: variant, seed, domain, validation loss (nats/byte), activated fraction, params."""
    rows = []
    for (name, seed), (model, _log) in results.items():
        losses = domain_losses(model, dd)
        act = model_activated_fraction(model) if moh_layers(model) else 1.0
        for dom, v in losses.items():
            rows.append(
                {
                    "variant": name,
                    "seed": seed,
                    "domain": dom,
                    "val_loss": v,
                    "activated": act,
                    "params": model.num_params(),
                }
            )
    return pd.DataFrame(rows)


def lm_routing(model: HeadlabLM, dd: DomainData) -> tuple[dict[int, dict], np.ndarray]:
    """Routing records over every domain's validation windows, with the domain label per window."""
    batches = [w[:, :-1].to(model.device) for w in dd.val.values()]
    labels = np.concatenate([[t] * len(w) for t, w in dd.val.items()])
    return collect_routing(model, batches), labels
