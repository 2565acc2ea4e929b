"""Golden tests of headlab.heads on tiny random models of every family in the layout table.

Three independent references:
1. a hand-written attention forward (projections, RoPE, causal softmax, GQA) for the llama-style
   families and GPT-2: captured ``z`` and ``pattern`` must equal it;
2. for every family: ``z[b,t,h] = sum_k pattern[b,h,t,k] * v[b,k,kv(h)]`` and ``o_proj(z)`` is the
   attention module's output, and hook patterns equal ``output_attentions``;
3. zeroing head h with an intervention equals deleting h's slice of W_O.
"""

import math

import pytest
import torch
import transformers as tf

from headlab import heads
from headlab.nn import Config, HeadlabLM, LayerHeads

TOL = 1e-5  # fp32, tiny sizes: differences are summation-order noise (~1e-7)
torch.manual_seed(0)


def tiny(family: str, attn="eager"):
    common = dict(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    if family == "llama":
        cfg = tf.LlamaConfig(num_key_value_heads=2, **common)
        cls = tf.LlamaForCausalLM
    elif family == "gemma3_text":
        cfg = tf.Gemma3TextConfig(
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            **common,
        )
        cls = tf.Gemma3ForCausalLM
    elif family == "qwen2":
        cfg = tf.Qwen2Config(num_key_value_heads=2, **common)
        cls = tf.Qwen2ForCausalLM
    elif family == "olmo2":
        cfg = tf.Olmo2Config(num_key_value_heads=4, **common)
        cls = tf.Olmo2ForCausalLM
    elif family == "gpt2":
        cfg = tf.GPT2Config(vocab_size=97, n_embd=64, n_layer=3, n_head=4, n_positions=64)
        cls = tf.GPT2LMHeadModel
    elif family == "headlab":
        return HeadlabLM(
            Config(vocab_size=97, d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, max_seq_len=64, attn_impl=attn)
        ).eval()
    elif family == "headlab_dha":  # per-layer query->K/V maps with different K and V head counts
        lh = [
            LayerHeads([0, 0, 1, 2], [0, 1, 1, 1]),
            LayerHeads([0, 1, 2, 3], [0, 0, 0, 0]),
            LayerHeads([1, 0, 1, 0], [2, 1, 0, 2]),
        ]
        return HeadlabLM(
            Config(vocab_size=97, d_model=64, n_layers=3, n_heads=4, max_seq_len=64, layer_heads=lh, attn_impl=attn)
        ).eval()
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    m = cls(cfg).eval()
    with torch.no_grad():  # random biases so that bias handling is exercised
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    return m


FAMILIES = ["llama", "gemma3_text", "qwen2", "olmo2", "gpt2", "headlab", "headlab_dha"]
IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


def _rope(x, theta):  # x [b, h, t, d], rotate-half RoPE written out
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    ang = torch.outer(torch.arange(x.shape[2]).float(), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def reference_attention(model, family, layer, x):
    """Hand-written attention of one layer from its input ``x`` [b, t, d_model] -> (pattern, z)."""
    h = heads.Heads(model)
    a = h.attn(layer)
    B, T, _ = x.shape
    H, D = h.n_heads, h.d_head
    if family == "gpt2":
        W, b = a.c_attn.weight, a.c_attn.bias  # Conv1D: x @ W + b
        q, k, v = (x @ W + b).split(H * D, dim=-1)
        kv_map = torch.arange(H)
        nk = H
    else:
        q, k, v = a.q_proj(x), a.k_proj(x), a.v_proj(x)
        nk = k.shape[-1] // D
        kv_map = a.k_map if hasattr(a, "k_map") else torch.arange(H) // (H // nk)
    q = q.view(B, T, H, D).transpose(1, 2)
    k = k.view(B, T, nk, D).transpose(1, 2)
    v = v.view(B, T, v.shape[-1] // D, D).transpose(1, 2)
    if family != "gpt2":
        theta = model.config.rope_theta if family.startswith("headlab") else model.config.rope_parameters["rope_theta"]
        q, k = _rope(q, theta), _rope(k, theta)
    v_map = a.v_map if hasattr(a, "v_map") else kv_map
    k, v = k[:, kv_map], v[:, v_map]
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    p = s.softmax(-1)
    return p, (p @ v).transpose(1, 2)  # [b, h, q, k], [b, t, h, d]


def _attn_inputs(model):
    """Capture each layer's attention-module input (the normed residual stream)."""
    h = heads.Heads(model)
    store, hs = {}, []
    for l in range(h.n_layers):
        hs.append(
            h.attn(l).register_forward_pre_hook(
                lambda m, args, kwargs, l=l: store.__setitem__(
                    l, (args[0] if args else kwargs["hidden_states"]).detach()
                ),
                with_kwargs=True,
            )
        )
    with torch.no_grad():
        model(IDS)
    for x in hs:
        x.remove()
    return store


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "headlab", "headlab_dha"])
def test_capture_matches_handwritten_reference(family):
    model = tiny(family)
    xs = _attn_inputs(model)
    with torch.no_grad(), heads.capture(model, z=True, pattern=True) as c:
        model(IDS)
    for l in range(heads.Heads(model).n_layers):
        p_ref, z_ref = reference_attention(model, family, l, xs[l])
        torch.testing.assert_close(c.pattern[l], p_ref, atol=TOL, rtol=0)
        torch.testing.assert_close(c.z[l], z_ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_z_pattern_v_consistent_and_gqa_aware(family):
    model = tiny(family)
    h = heads.Heads(model)
    outs = {}
    hooks = [
        h.attn(l).register_forward_hook(lambda m, i, o, l=l: outs.__setitem__(l, o[0].detach()))
        for l in range(h.n_layers)
    ]
    with torch.no_grad(), heads.capture(model, z=True, pattern=True, v=True) as c:
        model(IDS)
    for x in hooks:
        x.remove()
    assert set(c.z) == set(range(h.n_layers))
    for l in range(h.n_layers):
        z, p, v = c.z[l], c.pattern[l], c.v[l]
        B, T, H, D = z.shape
        assert (H, D) == (h.n_heads, h.d_head) and p.shape == (B, H, T, T)
        torch.testing.assert_close(p.sum(-1), torch.ones(B, H, T), atol=TOL, rtol=0)
        assert torch.all(p.triu(1) == 0), "attention to future positions"
        torch.testing.assert_close(torch.einsum("bhqk,bkhd->bqhd", p, v), z, atol=TOL, rtol=0)
        torch.testing.assert_close(h.o_proj(l)(z.reshape(B, T, H * D)), outs[l], atol=TOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "qwen2", "olmo2", "gpt2"])
def test_hook_patterns_equal_output_attentions(family):
    model = tiny(family)
    with torch.no_grad(), heads.capture(model, z=False, pattern=True) as c:
        out = model(IDS, output_attentions=True)
    for l, ref in enumerate(out.attentions):
        torch.testing.assert_close(c.pattern[l], ref, atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer,head", [(0, 0), (1, 3), (2, 1)])
def test_zeroing_head_equals_removing_its_wo_slice(family, layer, head):
    model = tiny(family)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[layer, head] = True
    with torch.no_grad(), heads.intervene(model, heads.zero(mask)):
        got = model(IDS).logits
    h = heads.Heads(model)
    w, idx = h.o_proj_weight_slice(layer, head)
    with torch.no_grad():
        w[idx] = 0.0
        ref = model(IDS).logits
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gpt2", "headlab"])
def test_per_row_mask_only_touches_its_row(family):
    model = tiny(family)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)  # [batch, layer, head]
    mask[1, 0, :] = True  # row 1 loses every head of layer 0
    with torch.no_grad():
        base = model(IDS).logits
        with heads.intervene(model, heads.zero(mask)):
            got = model(IDS).logits
    torch.testing.assert_close(got[0], base[0], atol=0, rtol=0)
    assert (got[1] - base[1]).abs().max() > 1e-4


def test_pattern_aware_edit_is_exact_and_sees_same_forward():
    """An edit that reads the pattern (applied after the attention module) gives the same result
    as the plain pre-o_proj edit when it picks the same heads."""
    model = tiny("llama")

    def sel(view):  # attention to the first token [b, h]
        return view.pattern[:, :, :, 0].mean(-1) > 0.2

    picked = {}
    with torch.no_grad(), heads.capture(model, z=False, pattern=True) as c:
        model(IDS)
    for l in range(3):
        picked[l] = c.pattern[l][:, :, :, 0].mean(-1) > 0.2
    # the decision changes downstream patterns, so compare layer 0 decisions plus exactness below
    e = heads.zero_where(sel)
    with torch.no_grad(), heads.intervene(model, e, needs=("pattern",)):
        got = model(IDS).logits
    assert torch.equal(e.zeroed[0], picked[0])
    mask = torch.stack([e.zeroed[l] for l in range(3)], 1)  # [batch, layer, head]
    with torch.no_grad(), heads.intervene(model, heads.zero(mask)):
        ref = model(IDS).logits
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "path, n_zeroed",
    [("tap", 1), ("after", 1), ("after", 4)],  # after the module: 1 head -> W_O-column correction; 4 -> recompute
)
def test_pattern_aware_zeroing_matches_pre_hook_zeroing(family, path, n_zeroed, monkeypatch):
    """Every path of a pattern-reading edit (at the o_proj input with the pattern tapped before o_proj; or,
    without a tap, after the module through the changed heads' W_O columns or a full o_proj recompute)
    equals zeroing the same heads before o_proj, per row, in every layer."""
    model = tiny(family)
    if path == "after":
        monkeypatch.setattr(heads, "_pattern_tap", lambda *a: None)
    else:
        monkeypatch.setattr(heads, "_corrected_output", None)  # calling it would fail: the tap must serve
    mask = torch.zeros(IDS.shape[0], 3, 4, dtype=torch.bool)  # [batch, layer, head]
    mask[0, :, :n_zeroed] = True  # row 0 only: row 1 must stay untouched
    mask[1, 2, 3] = True
    e = heads.zero_where(lambda view: mask[:, view.layer].clone())
    with torch.no_grad(), heads.intervene(model, e, needs=("pattern",)):
        got = model(IDS).logits
    with torch.no_grad(), heads.intervene(model, heads.zero(mask)):
        ref = model(IDS).logits
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
def test_pattern_tap_restores_the_modeling_module(family):
    """The wrapped ``eager_attention_forward`` is the original again after the edit, also on error, and a
    tap of one model does not fire for another model of the same class."""
    import sys

    model, other = tiny(family), tiny(family)
    mod = sys.modules[type(heads.Heads(model).attn(0)).__module__]
    orig = mod.eager_attention_forward
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), heads.intervene(model, lambda v: seen.append(v.layer), needs=("pattern",)):
            assert mod.eager_attention_forward is not orig
            other(IDS)  # same class, no edit on it
            assert seen == []
            model(IDS)
            raise RuntimeError("boom")
    assert seen == [0, 1, 2] and mod.eager_attention_forward is orig and not heads._EAGER_TAPS


def test_capture_inside_pattern_edit_sees_edited_z():
    """A capture nested in a pattern-reading edit sees z' (the correction then recomputes o_proj)."""
    model = tiny("llama")
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 2] = True
    with torch.no_grad(), heads.intervene(model, heads.zero(mask), needs=("pattern",)):
        with heads.capture(model, z=True) as c:
            model(IDS)
    assert c.z[1][:, :, 2].abs().max() == 0 and c.z[1][:, :, 1].abs().max() > 0


def test_scale_and_replace():
    model = tiny("qwen2")
    with torch.no_grad():
        base = model(IDS).logits
        with heads.intervene(model, heads.scale(torch.ones(3, 4))):
            same = model(IDS).logits
        with heads.capture(model) as c:
            model(IDS)
        other = IDS.flip(0)
        with heads.capture(model) as c2:
            model(other)
        full = torch.ones(3, 4, dtype=torch.bool)  # replace every head's z by the other input's
        with heads.intervene(model, heads.replace(c2.z, full), layers=[0]):
            patched = model(IDS).logits
    torch.testing.assert_close(same, base, atol=TOL, rtol=0)
    assert (patched - base).abs().max() > 1e-4
    assert set(c.z) == {0, 1, 2}


@pytest.mark.parametrize("family", ["llama", "headlab"])
def test_no_hooks_left_behind(family):
    model = tiny(family)

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = n_hooks()
    with heads.capture(model, z=True, pattern=True, v=True):
        pass
    with pytest.raises(RuntimeError):
        with heads.intervene(model, heads.zero(torch.ones(3, 4, dtype=torch.bool)), needs=("pattern", "v")):
            raise RuntimeError("boom")
    assert n_hooks() == before


def test_patterns_under_sdpa_raise_clear_error():
    model = tiny("llama", attn="sdpa")
    with pytest.raises(heads.AttentionImplError, match="eager"):
        with heads.capture(model, pattern=True):
            pass
    hl = tiny("headlab", attn="sdpa")
    with pytest.raises(heads.AttentionImplError, match="eager"):
        with heads.intervene(hl, lambda v: None, needs=("pattern",)):
            pass


def test_unknown_architecture_is_named():
    m = torch.nn.Linear(2, 2)
    m.config = type("C", (), {"model_type": "mamba"})()
    with pytest.raises(KeyError, match="mamba"):
        heads.Heads(m)


@pytest.mark.parametrize("family", FAMILIES)
def test_w_o_splits_o_proj_by_head(family):
    """o_proj(z) = bias + sum_h z_h @ w_o[h] on every family (nn.Linear [out, in] and GPT-2's Conv1D [in, out])."""
    model = tiny(family)
    h = heads.Heads(model)
    z = torch.randn(2, 5, h.n_heads, h.d_head, generator=torch.Generator().manual_seed(0))
    o = h.o_proj(1)
    bias = o.bias if getattr(o, "bias", None) is not None else 0.0
    with torch.no_grad():
        want = o(z.flatten(-2))
        got = torch.einsum("bphd,hdm->bpm", z, h.w_o(1)) + bias
    assert h.w_o(1).shape == (h.n_heads, h.d_head, want.shape[-1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "headlab"])
def test_eager_switches_for_the_duration_and_restores_on_error(family):
    model = tiny(family, attn="sdpa")
    h = heads.Heads(model)
    before = h.attn_implementation()
    assert before == "sdpa"
    with heads.eager(model):
        assert h.attn_implementation() == "eager"
        with heads.capture(model, z=False, pattern=True) as c:
            model(IDS)
        assert len(c.pattern) == h.n_layers
    assert h.attn_implementation() == before
    with pytest.raises(RuntimeError, match="boom"), heads.eager(model):
        raise RuntimeError("boom")
    assert h.attn_implementation() == before
