"""headlab's own small decoder: llama-style (RMSNorm, RoPE, SwiGLU MLP), nanoGPT-sized.

One attention module covers every head layout the papers need:

* MHA:  ``n_kv_heads == n_heads``
* GQA:  ``n_kv_heads < n_heads`` (query head h reads KV head ``h // (n_heads // n_kv_heads)``)
* DHA:  arbitrary per-layer maps ``k_map[h]`` / ``v_map[h]`` from query head to K head and to V head,
        with a per-layer number of K and V heads (``LayerHeads``).

Two execution paths: ``attn_impl="sdpa"`` (fused, for training) and ``attn_impl="eager"`` (an
explicit softmax that also returns the attention pattern ``[batch, head, q, k]``). Per-head
outputs ``z`` ``[batch, pos, head, d_head]`` are what ``o_proj`` receives, so ``headlab.heads``
hooks this model exactly like a Hugging Face one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LayerHeads:
    """Query-head -> K-head and query-head -> V-head maps of one layer (length ``n_heads`` each)."""

    k_map: list[int]
    v_map: list[int]

    @property
    def n_k(self) -> int:
        return max(self.k_map) + 1

    @property
    def n_v(self) -> int:
        return max(self.v_map) + 1


@dataclass
class Config:
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int | None = None  # None: MHA
    d_head: int | None = None  # None: d_model // n_heads
    d_mlp: int | None = None  # None: 4 * d_model (SwiGLU keeps ~parameter parity at 8/3, we keep it simple)
    max_seq_len: int = 256
    pos_emb: str = "rope"  # "rope" | "learned" | "none"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    attn_only: bool = False  # no MLP blocks (Count01's one-layer attention-only models)
    final_norm: bool = True
    tie_embeddings: bool = True
    attn_impl: str = "sdpa"  # "sdpa" | "eager"
    layer_heads: list[LayerHeads] | None = None  # DHA: per-layer head maps, overrides n_kv_heads
    model_type: str = field(default="headlab", init=False)

    def __post_init__(self):
        if self.d_head is None:
            self.d_head = self.d_model // self.n_heads
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.pos_emb not in ("rope", "learned", "none"):
            raise ValueError(f"pos_emb must be rope, learned or none, not {self.pos_emb!r}")
        if self.attn_impl not in ("sdpa", "eager"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'eager', not {self.attn_impl!r}")
        if self.layer_heads is not None:
            self.layer_heads = [lh if isinstance(lh, LayerHeads) else LayerHeads(**lh) for lh in self.layer_heads]
            if len(self.layer_heads) != self.n_layers:
                raise ValueError(f"layer_heads has {len(self.layer_heads)} entries for {self.n_layers} layers")
            for i, lh in enumerate(self.layer_heads):
                if len(lh.k_map) != self.n_heads or len(lh.v_map) != self.n_heads:
                    raise ValueError(f"layer {i}: k_map/v_map must have n_heads={self.n_heads} entries")

    def heads_of(self, layer: int) -> LayerHeads:
        if self.layer_heads is not None:
            return self.layer_heads[layer]
        group = self.n_heads // self.n_kv_heads
        m = [h // group for h in range(self.n_heads)]
        return LayerHeads(k_map=m, v_map=list(m))

    # Hugging Face-like names, so headlab.heads reads every model the same way.
    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def _attn_implementation(self) -> str:
        return self.attn_impl

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model_type")
        return d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cache(seq_len: int, d_head: int, theta: float, device=None):
    """cos/sin ``[seq, d_head]`` in the rotate-half layout used by Llama in transformers."""
    inv = 1.0 / theta ** (torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head)
    ang = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x: [batch, head, pos, d_head]."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def causal_mask(T: int, doc_ids: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """Boolean ``[batch|1, 1, q, k]``, True where attention is allowed. ``doc_ids`` [batch, pos]
    restricts attention to the query's own document (intra-document masking)."""
    m = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]
    if doc_ids is not None:
        m = m & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    return m


class Attention(nn.Module):
    def __init__(self, cfg: Config, layer: int):
        super().__init__()
        lh = cfg.heads_of(layer)
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.n_k, self.n_v = lh.n_k, lh.n_v
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.d_head, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, self.n_k * cfg.d_head, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, self.n_v * cfg.d_head, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.d_head, cfg.d_model, bias=False)
        self.hook_pattern = nn.Identity()  # the pattern passes through here before o_proj (headlab.heads taps it)
        self.register_buffer("k_map", torch.tensor(lh.k_map), persistent=False)
        self.register_buffer("v_map", torch.tensor(lh.v_map), persistent=False)
        self.cfg = cfg

    def forward(self, x, cos=None, sin=None, doc_ids=None, need_weights: bool = False):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # [b, head, pos, d]
        k = self.k_proj(x).view(B, T, self.n_k, self.d_head).transpose(1, 2)  # [b, k_head, pos, d]
        v = self.v_proj(x).view(B, T, self.n_v, self.d_head).transpose(1, 2)  # [b, v_head, pos, d]
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.index_select(1, self.k_map)  # [b, head, pos, d]: each query head's K
        v = v.index_select(1, self.v_map)
        weights = None
        if self.cfg.attn_impl == "eager" or need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)  # [b, head, q, k]
            scores = scores.masked_fill(~causal_mask(T, doc_ids, x.device), float("-inf"))
            weights = self.hook_pattern(scores.softmax(-1))  # [b, head, q, k]
            z = weights @ v
        elif doc_ids is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, doc_ids, x.device))
        z = z.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)  # o_proj input = hook_z
        return self.o_proj(z), weights


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.down_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: Config, layer: int, attention_cls=Attention):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = attention_cls(cfg, layer)
        self.mlp = None
        if not cfg.attn_only:
            self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, doc_ids=None):
        a, _ = self.self_attn(self.input_layernorm(x), cos, sin, doc_ids)
        x = x + a
        if self.mlp is not None:
            x = x + self.mlp(self.post_attention_layernorm(x))
        return x


@dataclass
class LMOutput:
    logits: torch.Tensor  # [batch, pos, vocab]
    loss: torch.Tensor | None = None


class HeadlabLM(nn.Module):
    """Decoder-only LM. ``model(input_ids, labels=...)`` returns ``LMOutput`` (``labels`` are
    the *next* tokens, already shifted, nanoGPT-style; -100 is ignored)."""

    def __init__(self, cfg: Config, attention_cls=Attention):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.pos_emb == "learned" else None
        self.layers = nn.ModuleList([Block(cfg, i, attention_cls) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        if cfg.pos_emb == "rope":
            cos, sin = rope_cache(cfg.max_seq_len, cfg.d_head, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for n, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if n.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    @property
    def device(self):
        return self.embed_tokens.weight.device

    def set_attn_implementation(self, impl: str) -> HeadlabLM:
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'eager', not {impl!r}")
        self.config.attn_impl = impl
        return self

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - (self.embed_tokens.weight.numel() if non_embedding else 0)

    def hidden(self, input_ids, doc_ids=None):
        """Final hidden states (after the last norm) ``[batch, pos, d_model]``."""
        B, T = input_ids.shape
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len={self.config.max_seq_len}")
        x = self.embed_tokens(input_ids)
        cos = sin = None
        if self.pos is not None:
            x = x + self.pos(torch.arange(T, device=input_ids.device))
        elif self.config.pos_emb == "rope":
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for block in self.layers:
            x = block(x, cos, sin, doc_ids)
        return self.norm(x)

    def forward(self, input_ids, labels=None, doc_ids=None, **_):
        logits = self.lm_head(self.hidden(input_ids, doc_ids))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return LMOutput(logits=logits, loss=loss)

    # -- checkpoints: a plain config.json + safetensors, like the HF cache --------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": "headlab", **self.config.to_dict()}, indent=1))
        save_model(self, str(path / "model.safetensors"))
        return path

    @classmethod
    def load(cls, path: str | Path, attention_cls=Attention) -> HeadlabLM:
        from safetensors.torch import load_model

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no headlab checkpoint at {path} (expected config.json + model.safetensors)")
        d = json.loads((path / "config.json").read_text())
        d.pop("model_type", None)
        model = cls(Config(**d), attention_cls)
        load_model(model, str(path / "model.safetensors"))
        return model.eval()
