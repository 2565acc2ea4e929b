"""Where attention heads live, and how to read and edit them per head.

Vocabulary (TransformerLens's):

* ``z``        ``[batch, pos, head, d_head]`` one query head's output *before* W_O, i.e. the
               input of the attention output projection (``o_proj`` / ``c_proj``), split per head.
* ``pattern``  ``[batch, head, q, k]`` attention weights (needs eager attention).
* ``v``        ``[batch, pos, head, d_head]`` value vectors, already mapped to *query* heads
               (GQA / DHA aware: query head h reads KV head ``kv_map[h]``).

One table (``LAYOUTS``) says where heads live per architecture, so no notebook names a module path.

Capture::

    with heads.capture(model, z=True, pattern=True) as cache:
        model(ids)
    cache.z[3]          # [batch, pos, head, d_head] of layer 3

Intervene (per batch row, layer and head; the edit sees this forward's own activations)::

    with heads.intervene(model, heads.zero(mask)):       # mask [layer, head] or [batch, layer, head]
        model(ids)
    with heads.intervene(model, my_edit, needs=("pattern",)):   # my_edit(view) -> new z or None
        model(ids)

An edit that needs the layer's values or pattern still runs at the o_proj input: v is recorded as
v_proj runs, and the pattern is tapped as the eager attention function returns it, before o_proj
(Hugging Face models: the modeling module's ``eager_attention_forward``, wrapped while the edit is
active; headlab models: ``Attention.hook_pattern``). Where no tap exists, the edit is applied after
the attention module has run and its output is corrected to ``o_proj(z_edited)`` (through the changed
heads' columns of W_O only, when few heads changed); the result is exact either way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ._taps import _EAGER_TAPS, _pattern_tap  # noqa: F401  (the eager-attention pattern tap; _EAGER_TAPS for tests)


class AttentionImplError(RuntimeError):
    """Raised when attention weights are asked of a model that does not run eager attention."""


@dataclass(frozen=True)
class Layout:
    """Where one architecture keeps its heads (attribute paths relative to the top model)."""

    layers: str  # dotted path to the list of decoder blocks
    attn: str  # attribute of a block: the attention module (returns (out, weights, ...))
    o_proj: str  # attribute of the attention module whose *input* is z
    v_proj: str  # attribute of the attention module producing values ("c_attn:2" = third of a fused qkv)
    n_heads: str  # config attribute names
    n_kv_heads: str | None
    head_dim: str | None  # None: hidden // n_heads
    hidden: str


_LLAMA = Layout(
    "model.layers",
    "self_attn",
    "o_proj",
    "v_proj",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_size",
)

LAYOUTS: dict[str, Layout] = {
    "llama": _LLAMA,  # SmolLM2, Llama 2/3
    "gemma3_text": _LLAMA,  # Gemma-3 (q/k norms live inside the attention module; z is unaffected)
    "gemma3": Layout(
        "model.language_model.layers",
        "self_attn",
        "o_proj",
        "v_proj",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_size",
    ),
    "gemma": _LLAMA,  # Gemma 1 (gemma-7b: 16 heads of 256, MHA); found missing by the paper rehearsal
    "gemma2": _LLAMA,
    "qwen2": _LLAMA,
    "olmo2": _LLAMA,
    "mistral": _LLAMA,
    "gpt2": Layout("transformer.h", "attn", "c_proj", "c_attn:2", "n_head", None, None, "n_embd"),
    "headlab": Layout("layers", "self_attn", "o_proj", "v_proj", "n_heads", "n_kv_heads", "d_head", "d_model"),
}


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _config_of(model):
    cfg = model.config
    # gemma3 multimodal keeps the LM's numbers in text_config
    if cfg.model_type == "gemma3":
        return getattr(cfg, "text_config", None) or cfg
    return cfg


class Heads:
    """A resolved view of a model's heads: counts, modules and the query->KV map per layer."""

    def __init__(self, model: nn.Module):
        mt = getattr(getattr(model, "config", None), "model_type", None)
        if mt not in LAYOUTS:
            raise KeyError(
                f"headlab.heads has no layout for model_type={mt!r}; known: {sorted(LAYOUTS)}. "
                "Add one line to headlab.heads.LAYOUTS."
            )
        self.model, self.model_type, self.layout = model, mt, LAYOUTS[mt]
        cfg = _config_of(model)
        L = self.layout
        self.n_heads = getattr(cfg, L.n_heads)
        self.n_kv_heads = getattr(cfg, L.n_kv_heads) if L.n_kv_heads else self.n_heads
        hidden = getattr(cfg, L.hidden)
        self.d_head = (getattr(cfg, L.head_dim, None) if L.head_dim else None) or hidden // self.n_heads
        self.blocks = list(_get(model, L.layers))
        self.n_layers = len(self.blocks)

    def attn(self, layer: int) -> nn.Module:
        return getattr(self.blocks[layer], self.layout.attn)

    def o_proj(self, layer: int) -> nn.Module:
        return getattr(self.attn(layer), self.layout.o_proj)

    def kv_map(self, layer: int) -> torch.Tensor:
        """``[head]`` index of the V head each query head reads (GQA groups, or DHA's own map)."""
        a = self.attn(layer)
        if hasattr(a, "v_map"):
            return a.v_map
        return torch.arange(self.n_heads) // (self.n_heads // self.n_kv_heads)

    def attn_implementation(self) -> str:
        cfg = self.model.config
        return getattr(cfg, "_attn_implementation", None) or getattr(cfg, "attn_impl", "unknown")

    def require_eager(self, what: str = "attention patterns"):
        impl = self.attn_implementation()
        if impl != "eager":
            raise AttentionImplError(
                f"{what} need eager attention, but this model runs {impl!r}. Load it with "
                f"headlab.models.load(..., attn='eager') or call model.set_attn_implementation('eager')."
            )

    def w_o(self, layer: int) -> torch.Tensor:
        """W_O split by head, ``[head, d_head, d_model]`` (a view of the weight): head h adds ``z_h @ w_o[h]``.
        On a layer that accelerate offloaded (``models.load(..., device_map=...)``) it is a copy loaded from
        the offload store, on the layer's execution device."""
        w = _weight(self.o_proj(layer))  # nn.Linear: [d_model, head * d_head]; GPT-2's Conv1D: [head * d_head, d_model]
        w = w if self.model_type == "gpt2" else w.T
        return w.view(self.n_heads, self.d_head, w.shape[-1])

    def o_proj_weight_slice(self, layer: int, head: int) -> tuple[torch.Tensor, tuple]:
        """The W_O parameter and the index of head's columns (as an index tuple into the weight), for editing
        it in place; a one-line error on a layer that accelerate offloaded (its parameter is a placeholder)."""
        w = self.o_proj(layer).weight
        if w.device.type == "meta":
            raise ValueError(f"layer {layer}'s o_proj is offloaded (device_map): its weight cannot be edited in place")
        s = slice(head * self.d_head, (head + 1) * self.d_head)
        # nn.Linear: [out, in]; GPT-2's Conv1D: [in, out]
        return w, ((s,) if self.model_type == "gpt2" else (slice(None), s))

    def __repr__(self):
        return (
            f"Heads({self.model_type}: {self.n_layers} layers x {self.n_heads} query heads, "
            f"{self.n_kv_heads} KV heads, d_head={self.d_head})"
        )


def _weight(module: nn.Module) -> torch.Tensor:
    """``module.weight``; for a module whose weights accelerate offloaded (meta until its own forward runs),
    the weight loaded from the offload store (a copy: editing it does not edit the model)."""
    w = module.weight
    if w.device.type != "meta" or not hasattr(module, "_hf_hook"):
        return w
    from accelerate.utils import align_module_device

    with align_module_device(module):
        return module.weight.detach().clone()


def _split(x: torch.Tensor, n: int) -> torch.Tensor:
    """[batch, pos, n*d] -> [batch, pos, n, d]"""
    return x.view(*x.shape[:-1], n, x.shape[-1] // n)


def _layers(h: Heads, layers) -> list[int]:
    return list(range(h.n_layers)) if layers is None else [int(l) for l in layers]


@dataclass
class Cache:
    """Per-layer activations from one forward. Tensors are detached, on the model's device."""

    z: dict[int, torch.Tensor] = field(default_factory=dict)  # [batch, pos, head, d_head]
    pattern: dict[int, torch.Tensor] = field(default_factory=dict)  # [batch, head, q, k]
    v: dict[int, torch.Tensor] = field(default_factory=dict)  # [batch, pos, head, d_head]

    def stack(self, name: str) -> torch.Tensor:
        """``[layer, ...]`` of one kind, layers in order."""
        d = getattr(self, name)
        first = d[min(d)] if d else None  # layers dispatched over several GPUs: gather on the first one's device
        return torch.stack([d[k].to(first.device) for k in sorted(d)])


def _v_hook(h: Heads, layer: int, store: Callable[[torch.Tensor], None]):
    spec = h.layout.v_proj
    name, _, part = spec.partition(":")
    module = getattr(h.attn(layer), name)
    kv_map = h.kv_map(layer)

    def hook(_m, _inp, out):
        if part:  # fused qkv: take the requested third
            out = out.chunk(3, dim=-1)[int(part)]
        v = _split(out, out.shape[-1] // h.d_head)  # [batch, pos, kv_head, d_head]
        store(v.index_select(2, kv_map.to(v.device)))  # [batch, pos, head, d_head]

    return module.register_forward_hook(hook)


def _corrected_output(
    h: Heads, module: nn.Module, out, flat: torch.Tensor, new: torch.Tensor, own_hook: int
) -> torch.Tensor:
    """The attention output for the edited ``new`` z ``[batch, pos, head, d_head]`` given the output
    ``out`` already computed from ``flat`` z ``[batch, pos, head * d_head]``.

    o_proj is linear, so o_proj(z') = o_proj(z) + W_O (z' - z); when few heads changed (zeroing a
    fraction of heads) only their columns of W_O are multiplied, which is cheaper than recomputing
    o_proj. With more than half the heads changed, or when other hooks sit on o_proj (a capture or a
    second intervention, which must see z'), o_proj(z') is recomputed instead."""
    o_proj = getattr(module, h.layout.o_proj)
    dz = new.reshape(flat.shape) - flat  # [batch, pos, head * d_head]
    touched = dz.unflatten(-1, (h.n_heads, h.d_head)).ne(0).any(-1).flatten(0, -2).any(0)  # [head]
    n = int(touched.sum())
    base = out[0] if isinstance(out, tuple) else out
    if n == 0:
        return base
    # an offloaded o_proj (accelerate's hook) holds meta weights outside its own forward: recompute through it
    offloaded = o_proj.weight.device.type == "meta"
    if offloaded or 2 * n > h.n_heads or o_proj._forward_hooks or set(o_proj._forward_pre_hooks) - {own_hook}:
        _reentry.on = True
        try:  # recompute the attention output from the edited z (hooks on o_proj see z')
            return o_proj(new.reshape(flat.shape))
        finally:
            _reentry.on = False
    heads_idx = touched.nonzero().flatten()
    cols = (heads_idx[:, None] * h.d_head + torch.arange(h.d_head, device=heads_idx.device)).flatten()
    w = o_proj.weight  # nn.Linear: [out, in]; GPT-2's Conv1D: [in, out]
    w_cols = w[cols] if h.model_type == "gpt2" else w[:, cols].T  # [k * d_head, d_model]
    return base + dz[..., cols] @ w_cols


def _attn_output_weights(out):
    """The attention weights in an attention module's output tuple (None under sdpa)."""
    return out[1] if isinstance(out, tuple) and len(out) > 1 else None


@contextlib.contextmanager
def eager(model: nn.Module):
    """Run ``model`` with eager attention (its patterns observable) for the duration, and restore the
    implementation it had afterwards, also on error. headlab models (``config.attn_impl``, also the papers'
    own models built on headlab's Config) and Hugging Face models (``set_attn_implementation``)."""
    cfg = model.config
    if hasattr(cfg, "attn_impl"):
        old, cfg.attn_impl = cfg.attn_impl, "eager"
        try:
            yield model
        finally:
            cfg.attn_impl = old
        return
    old = getattr(cfg, "_attn_implementation", None)
    if old == "eager":
        yield model
        return
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(old)


@contextlib.contextmanager
def projections(model: nn.Module, kinds: Iterable[str] = ("q", "k", "v"), layers: Iterable[int] | None = None):
    """Record each layer's ``q_proj``/``k_proj``/``v_proj`` outputs (``[batch, pos, heads * d_head]``, before
    RoPE) of every forward while active, as ``rec[(kind, layer)]``, where the attention module has them
    (llama, gemma, qwen, olmo and headlab's own models)."""
    h = model if isinstance(model, Heads) else Heads(model)
    rec: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for l in _layers(h, layers):
        a = h.attn(l)
        for kind in kinds:
            m = getattr(a, f"{kind}_proj", None)
            if m is not None:
                handles.append(m.register_forward_hook(lambda _m, _i, out, k=kind, l=l: rec.__setitem__((k, l), out)))
    try:
        yield rec
    finally:
        for hd in handles:
            hd.remove()


@contextlib.contextmanager
def capture(
    model: nn.Module,
    z: bool = True,
    pattern: bool = False,
    v: bool = False,
    layers: Iterable[int] | None = None,
    detach: bool = True,
):
    """Record ``z`` (o_proj input), ``pattern`` (eager only) and ``v`` for the given layers."""
    h = Heads(model)
    if pattern:
        h.require_eager()
    cache, handles = Cache(), []
    prep = (lambda t: t.detach()) if detach else (lambda t: t)
    try:
        for l in _layers(h, layers):
            if z:

                def zhook(_m, args, l=l):
                    cache.z[l] = prep(_split(args[0], h.n_heads))

                handles.append(h.o_proj(l).register_forward_pre_hook(zhook))
            if pattern:

                def phook(_m, _inp, out, l=l):
                    w = _attn_output_weights(out)
                    if w is None:
                        raise AttentionImplError(f"layer {l} returned no attention weights; use eager attention")
                    cache.pattern[l] = prep(w)

                handles.append(h.attn(l).register_forward_hook(phook))
            if v:
                handles.append(_v_hook(h, l, lambda t, l=l: cache.v.__setitem__(l, prep(t))))
        yield cache
    finally:
        for hd in handles:
            hd.remove()


@dataclass
class HeadView:
    """What an edit function sees for one layer of one forward pass."""

    layer: int
    z: torch.Tensor  # [batch, pos, head, d_head]
    pattern: torch.Tensor | None = None  # [batch, head, q, k]
    v: torch.Tensor | None = None  # [batch, pos, head, d_head]
    heads: Heads | None = None

    @property
    def valid(self) -> torch.Tensor | None:
        """``[batch, pos]`` bool of real (non-padding) tokens, when the caller declared it with
        ``token_mask``; None means every position is real."""
        return getattr(_valid, "mask", None)


Edit = Callable[[HeadView], "torch.Tensor | None"]
_reentry = threading.local()
_valid = threading.local()


@contextlib.contextmanager
def token_mask(valid: torch.Tensor | None):
    """Declare which positions of the batch being run are real tokens (``[batch, pos]`` bool), so
    per-input head statistics inside edits can ignore right-padding (``HeadView.valid``)."""
    old = getattr(_valid, "mask", None)
    _valid.mask = valid
    try:
        yield
    finally:
        _valid.mask = old


@contextlib.contextmanager
def intervene(model: nn.Module, edit: Edit, layers: Iterable[int] | None = None, needs: Iterable[str] = ()):
    """Apply ``edit(view) -> z'`` (or None for "unchanged") at the o_proj input of each layer.

    ``needs`` may contain "pattern" and/or "v": the edit then also sees this layer's attention
    weights / value vectors from the same forward (eager attention required for "pattern").
    """
    h = Heads(model)
    needs = set(needs)
    if needs - {"pattern", "v"}:
        raise ValueError(f"needs may contain 'pattern' and 'v', not {needs - {'pattern', 'v'}}")
    if "pattern" in needs:
        h.require_eager("edits that read attention patterns")
    handles = []
    try:
        for l in _layers(h, layers):
            if not needs:

                def pre(_m, args, l=l):
                    if getattr(_reentry, "on", False):
                        return None
                    z = _split(args[0], h.n_heads)
                    new = edit(HeadView(l, z, heads=h))
                    if new is None:
                        return None
                    return (new.reshape(args[0].shape),) + tuple(args[1:])

                handles.append(h.o_proj(l).register_forward_pre_hook(pre))
                continue
            seen: dict = {}
            if "pattern" in needs:
                tap = _pattern_tap(h, l, lambda w, seen=seen: seen.__setitem__("pattern", w))
                if tap is not None:
                    handles.append(tap)
            if "v" in needs:
                handles.append(_v_hook(h, l, lambda t, seen=seen: seen.__setitem__("v", t)))

            def zpre(_m, args, l=l, seen=seen):
                if getattr(_reentry, "on", False):
                    return None
                if "pattern" in needs and "pattern" not in seen:  # no tap: edit after the module (below)
                    seen["z"] = args[0]
                    return None
                z = _split(args[0], h.n_heads)
                view = HeadView(l, z, pattern=seen.pop("pattern", None), v=seen.pop("v", None), heads=h)
                new = edit(view)
                if new is None:
                    return None
                return (new.reshape(args[0].shape),) + tuple(args[1:])

            zh = h.o_proj(l).register_forward_pre_hook(zpre)
            handles.append(zh)

            def post(module, _inp, out, l=l, seen=seen, own=zh.id):
                if "z" not in seen:  # already edited at the o_proj input
                    return None
                flat = seen.pop("z")
                z = _split(flat, h.n_heads)
                view = HeadView(l, z, pattern=_attn_output_weights(out), v=seen.pop("v", None), heads=h)
                new = edit(view)
                if new is None:
                    return None
                attn_out = _corrected_output(h, module, out, flat, new, own)
                return (attn_out,) + tuple(out[1:]) if isinstance(out, tuple) else attn_out

            handles.append(h.attn(l).register_forward_hook(post))
        yield h
    finally:
        for hd in handles:
            hd.remove()


def _per_row(t: torch.Tensor, layer: int, z: torch.Tensor) -> torch.Tensor:
    """Broadcast a [layer, head] or [batch, layer, head] table to z's [batch, 1, head, 1]."""
    t = t.to(z.device)
    sel = t[layer] if t.dim() == 2 else t[:, layer]  # [head] or [batch, head]
    if sel.dim() == 1:
        sel = sel[None]
    return sel[:, None, :, None]


def zero(mask: torch.Tensor) -> Edit:
    """Zero heads where ``mask`` is True. mask: bool ``[layer, head]`` or ``[batch, layer, head]``."""
    mask = torch.as_tensor(mask, dtype=torch.bool)

    def edit(view: HeadView):
        m = _per_row(mask, view.layer, view.z)
        return None if not m.any() else view.z.masked_fill(m, 0.0)

    return edit


def scale(factors: torch.Tensor) -> Edit:
    """Multiply each head's z by ``factors`` ``[layer, head]`` or ``[batch, layer, head]``."""
    factors = torch.as_tensor(factors, dtype=torch.float32)

    def edit(view: HeadView):
        return view.z * _per_row(factors, view.layer, view.z).to(view.z.dtype)

    return edit


def replace(new_z: dict[int, torch.Tensor], mask: torch.Tensor) -> Edit:
    """Replace z by ``new_z[layer]`` (``[batch, pos, head, d_head]``, e.g. from another input's
    cache) where ``mask`` (``[layer, head]`` or ``[batch, layer, head]``) is True."""
    mask = torch.as_tensor(mask, dtype=torch.bool)

    def edit(view: HeadView):
        m = _per_row(mask, view.layer, view.z)
        if not m.any():
            return None
        return torch.where(m, new_z[view.layer].to(view.z), view.z)

    return edit


def zero_where(select: Callable[[HeadView], torch.Tensor]) -> Edit:
    """Zero the heads that ``select(view) -> bool [batch, head]`` picks, decided per input from
    this forward's own activations (the dormant-heads protocol). Remembers what it zeroed in
    ``edit.zeroed[layer]`` (``[batch, head]`` bool) for reporting."""
    zeroed: dict[int, torch.Tensor] = {}

    def edit(view: HeadView):
        m = select(view).to(torch.bool)  # [batch, head]
        zeroed[view.layer] = m.detach().cpu()
        return view.z.masked_fill(m[:, None, :, None], 0.0)

    edit.zeroed = zeroed  # type: ignore[attr-defined]
    return edit
