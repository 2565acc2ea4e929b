"""The pattern tap of ``headlab.heads``: a layer's attention weights handed to a callback as the eager attention
function returns them, before ``o_proj`` runs (``heads.intervene(..., needs=("pattern",))`` edits at the o_proj
input with them)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import torch
from torch import nn


class _Handle:
    def __init__(self, remove: Callable[[], None]):
        self.remove = remove


# modeling module name -> (the original eager_attention_forward, {id(attention module): [store, ...]})
_EAGER_TAPS: dict[str, tuple[Callable, dict[int, list]]] = {}
_taps_lock = threading.Lock()


def _pattern_tap(h, layer: int, store: Callable[[torch.Tensor], None]):
    """Call ``store(pattern)`` with layer's ``[batch, head, q, k]`` attention weights as soon as they are
    computed, *before* o_proj runs; returns a handle (``.remove()``), or None where no tap exists.

    headlab models expose ``Attention.hook_pattern`` (an identity module the weights pass through).
    Hugging Face models look ``eager_attention_forward`` up in their modeling module at call time, so
    while a tap is active that global is wrapped (once per module, restored when the last tap goes)."""
    attn = h.attn(layer)
    point = getattr(attn, "hook_pattern", None)
    if isinstance(point, nn.Module):
        return point.register_forward_hook(lambda _m, _inp, w: store(w))
    mod = sys.modules.get(type(attn).__module__)
    if mod is None or not callable(getattr(mod, "eager_attention_forward", None)):
        return None
    key = mod.__name__
    with _taps_lock:
        if key not in _EAGER_TAPS:
            orig, listeners = mod.eager_attention_forward, {}

            def wrapped(module, *args, **kwargs):
                out = orig(module, *args, **kwargs)
                for s in listeners.get(id(module), ()):
                    s(out[1])
                return out

            _EAGER_TAPS[key] = (orig, listeners)
            mod.eager_attention_forward = wrapped
        orig, listeners = _EAGER_TAPS[key]
        listeners.setdefault(id(attn), []).append(store)

    def remove():
        with _taps_lock:
            mine = listeners.get(id(attn), [])
            if store in mine:
                mine.remove(store)
            if not mine:
                listeners.pop(id(attn), None)
            if not listeners and _EAGER_TAPS.get(key, (None,))[0] is orig:
                del _EAGER_TAPS[key]
                mod.eager_attention_forward = orig

    return _Handle(remove)
