"""Vision: a tiny ViT with MoH attention on scikit-learn's 8x8 digits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from headlab.nn import Block, Config, RMSNorm
from headlab.train import TrainConfig, train

from .checks import model_activated_fraction
from .layer import MoHAttention, MoHSpec, balance_loss, moh_layers

# ----------------------------------------------------------------------------------------------
# Vision: a tiny ViT on scikit-learn's 8x8 digits
# ----------------------------------------------------------------------------------------------


def digits(seed: int = 0, test_size: int = 360):
    """sklearn's bundled digits (1797 8x8 images, offline): stratified train/test split, pixels / 16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_size, stratify=y, random_state=seed)

    def f(a):
        return torch.tensor(a, dtype=torch.float32).view(-1, 8, 8)

    return f(Xtr), torch.tensor(ytr), f(Xte), torch.tensor(yte)


class TinyViT(nn.Module):
    """Patch embedding + learned positions + headlab blocks (pre-RMSNorm, SwiGLU) with non-causal
    attention + mean pooling + linear classifier. ``config.model_type == "headlab"`` and
    ``layers[i].self_attn.o_proj``, so ``headlab.heads`` works on it."""

    def __init__(
        self,
        spec: MoHSpec | Sequence[MoHSpec] | None = None,
        image: int = 8,
        patch: int = 2,
        d: int = 64,
        depth: int = 4,
        n_heads: int = 8,
        d_mlp: int = 128,
        n_classes: int = 10,
    ):
        super().__init__()
        self.patch = patch
        n_tok = (image // patch) ** 2
        self.config = Config(
            vocab_size=1,
            d_model=d,
            n_layers=depth,
            n_heads=n_heads,
            d_mlp=d_mlp,
            max_seq_len=n_tok,
            pos_emb="learned",
            attn_impl="eager",
        )  # 16 tokens: explicit softmax beats fused kernels
        spec = spec or MoHSpec(router="dense")
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * depth
        specs = [replace(s, causal=False) for s in specs]
        self.patch_embed = nn.Linear(patch * patch, d)
        self.pos = nn.Parameter(torch.zeros(1, n_tok, d))
        self.layers = nn.ModuleList([Block(self.config, i, partial(MoHAttention, spec=specs)) for i in range(depth)])
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def tokens(self, img: torch.Tensor) -> torch.Tensor:
        B, H, W = img.shape
        p = self.patch
        x = img.view(B, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(B, -1, p * p)
        return self.patch_embed(x) + self.pos

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.tokens(img)
        for blk in self.layers:
            x = blk(x, None, None)
        return self.head(self.norm(x).mean(1))


VIT_VARIANTS: dict[str, tuple[MoHSpec, float]] = {  # name -> (spec, beta); 8 heads per layer
    "MHA": (MoHSpec(router="dense"), 0.0),
    "MoH-88": (MoHSpec(n_shared=2, top_k=5), 0.01),  # 7/8 heads: the closest to the paper's 90
    "MoH-75": (MoHSpec(n_shared=2, top_k=4), 0.01),
    "MoH-62": (MoHSpec(n_shared=2, top_k=3), 0.01),
    "MoH-50": (MoHSpec(n_shared=2, top_k=2), 0.01),
    "MoH-75 no shared, no two-stage": (MoHSpec(router="no_shared", n_shared=0, top_k=6), 0.01),
    "MoH-75 no two-stage": (MoHSpec(router="no_two_stage", n_shared=2, top_k=4), 0.01),
    "MoH-75 random router": (MoHSpec(router="random", n_shared=2, top_k=4), 0.0),
    "MoH-75 h_s=1": (MoHSpec(n_shared=1, top_k=5), 0.01),
    "MoH-75 h_s=3": (MoHSpec(n_shared=3, top_k=3), 0.01),
    "MoH-75 h_s=4": (MoHSpec(n_shared=4, top_k=2), 0.01),
    "MoH-75 beta=0": (MoHSpec(n_shared=2, top_k=4), 0.0),
}


def train_vit(
    spec: MoHSpec,
    data,
    *,
    epochs: int = 30,
    batch: int = 128,
    lr: float = 2e-3,
    beta: float = 0.01,
    seed: int = 0,
    eval_every: int | None = None,
    device="cpu",
    **vit_kw,
) -> tuple[TinyViT, pd.DataFrame]:
    """Train a TinyViT with AdamW + cosine and loss = CE + beta * balance. Returns the model and the
    eval log (test accuracy, NLL, per-layer balance loss / K on the test set)."""
    Xtr, ytr, Xte, yte = (t.to(device) for t in data)
    torch.manual_seed(seed)
    model = TinyViT(spec, **vit_kw).to(device)
    steps_per_epoch = math.ceil(len(Xtr) / batch)
    steps = epochs * steps_per_epoch
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(len(Xtr), generator=g) for _ in range(epochs)]

    def get_batch(step):
        e, i = divmod(step, steps_per_epoch)
        idx = perms[e][i * batch : (i + 1) * batch].to(device)
        return Xtr[idx], ytr[idx]

    def loss_fn(m, x, y):
        return F.cross_entropy(m(x), y) + beta * balance_loss(m), {}

    def eval_fn(m):
        logits = m(Xte)
        row = {
            "test_acc": float((logits.argmax(-1) == yte).float().mean()),
            "test_nll": float(F.cross_entropy(logits, yte)),
        }
        for a in moh_layers(m):
            if a.aux_loss is not None:
                row[f"laux_over_K_l{a.layer}"] = float(a.aux_loss) / (a.K if a.spec.balance == "code" else a.K / a.E)
        return row

    tc = TrainConfig(
        steps=steps,
        lr=lr,
        min_lr_ratio=0.01,
        warmup=steps_per_epoch,
        weight_decay=0.05,
        eval_every=eval_every or steps_per_epoch * 5,
        seed=seed,
    )
    log = train(model, get_batch, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc=f"ViT {spec.router}")
    return model, pd.DataFrame(log)


def run_vit(names: Sequence[str], data, seeds: Sequence[int] = (0,), cache: dict | None = None, **kw) -> dict:
    """Train every (variant, seed) not yet in ``cache``: ``{(name, seed): (model, log)}``."""
    cache = {} if cache is None else cache
    for name in names:
        spec, beta = VIT_VARIANTS[name]
        for s in seeds:
            if (name, s) not in cache:
                cache[(name, s)] = train_vit(spec, data, beta=beta, seed=s, **kw)
    return cache


def vit_summary(results: dict, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (variant, seed): activated fraction, shared share of the active heads, params,
    final test accuracy / NLL, and the largest final balance loss / K over layers."""
    rows = []
    for (name, seed), (model, log) in results.items():
        if names is not None and name not in names:
            continue
        a = moh_layers(model)[0]
        active = a.spec.active(a.n_heads)
        last = log.iloc[-1]
        laux = [v for k, v in last.items() if k.startswith("laux_over_K")]
        rows.append(
            {
                "variant": name,
                "seed": seed,
                "router": a.spec.router,
                "h_s": a.h_s,
                "K": a.K if a.spec.router != "dense" else 0,
                "active_heads": active,
                "activated": model_activated_fraction(model),
                "shared_share": a.h_s / active,
                "beta": VIT_VARIANTS[name][1],
                "params": sum(p.numel() for p in model.parameters()),
                "test_acc": last["test_acc"],
                "test_nll": last["test_nll"],
                "final_laux_over_K_max": max(laux) if laux else float("nan"),
            }
        )
    df = pd.DataFrame(rows)
    if names is not None:
        df["variant"] = pd.Categorical(df["variant"], list(names), ordered=True)
        df = df.sort_values(["variant", "seed"]).reset_index(drop=True)
        df["variant"] = df["variant"].astype(str)
    return df
