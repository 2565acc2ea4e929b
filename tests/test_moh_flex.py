"""Exactness of headlab.papers.moh.flex (MoH attention on FlexAttention) on tiny CPU inputs.

References: the masked mode of ``MoHAttention`` (every head computed, then gated), full SDPA with the gates
applied, ``create_block_mask`` for the directly built block mask, and the last row of masked attention
for one decode step. Eager FlexAttention (compile=False) except the one compiled test (slow).
"""

import pytest
import torch
import torch.nn.functional as F

from headlab.nn import Config, apply_rope, rope_cache
from headlab.papers.moh import flex as fx
from headlab.papers.moh.layer import MoHAttention, MoHSpec, set_mode, topk_mask

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

B, T, H, DH, HS, K = 2, 37, 8, 16, 2, 3  # T is not a multiple of any block size used
D = H * DH
MHA = Config(vocab_size=8, d_model=D, n_layers=1, n_heads=H, d_head=DH, max_seq_len=T)
GQA = Config(vocab_size=8, d_model=D, n_layers=1, n_heads=H, n_kv_heads=2, d_head=DH, max_seq_len=T)
COS, SIN = rope_cache(T, DH, MHA.rope_theta)
DOCS = (torch.arange(T) >= 15).long()[None].repeat(B, 1)
torch.manual_seed(0)
X = torch.randn(B, T, D)


def pair(router, cfg, **kw):
    a = MoHAttention(cfg, 0, MoHSpec(n_shared=HS, top_k=K, router=router, **kw))
    b = MoHAttention(cfg, 0, MoHSpec(n_shared=HS, top_k=K, router=router, mode="flex", **kw))
    b.load_state_dict(a.state_dict())
    return a, b


def random_inputs(h_kv, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, n, T, DH, generator=g) for n in (H, h_kv, h_kv))
    sel = topk_mask(torch.rand(B, T, H - HS, generator=g), K)
    return q, k, v, sel, torch.rand(B, T, H, generator=g)


def gated_reference(q, k, v, sel, gates, causal=True):
    """Masked-mode math: every head attends every query, then the gate (0 where off)."""
    rep = H // k.shape[1]
    z = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=causal)
    on = torch.cat([torch.ones(B, T, HS, dtype=torch.bool), sel], -1)
    return z.transpose(1, 2) * (gates * on)[..., None]


@pytest.mark.parametrize("cfg", [MHA, GQA], ids=["mha", "gqa"])
@pytest.mark.parametrize("router", ["two_stage", "query_norm", "random"])
def test_flex_mode_equals_masked(router, cfg):
    for causal, docs in ((True, None), (True, DOCS), (False, None), (False, DOCS)):
        a, b = pair(router, cfg, causal=causal)
        with torch.no_grad():
            torch.manual_seed(3)
            oa = a(X, COS, SIN, docs)[0]
            torch.manual_seed(3)
            ob = b(X, COS, SIN, docs)[0]
        err = (oa - ob).abs().max().item()
        assert err <= 1e-5, (causal, docs is not None, err)


@pytest.mark.parametrize("h_kv", [H, 2], ids=["mha", "gqa"])
def test_function_equals_gated_reference_for_every_build_and_backend(h_kv):
    q, k, v, sel, gates = random_inputs(h_kv)
    for causal in (True, False):
        ref = gated_reference(q, k, v, sel, gates, causal)
        for kw in ({}, {"block_size": 8}, {"block_size": 8, "build": "create"}, {"backend": "sdpa"}):
            z = fx.moh_flex_attention(q, k, v, sel, n_shared=HS, gates=gates, causal=causal, **kw)
            assert (z - ref).abs().max().item() <= 1e-5, (causal, kw)
            assert (z[:, :, HS:][~sel] == 0).all()  # off (token, head) pairs are exactly 0


def test_direct_block_mask_equals_create_block_mask():
    _, _, _, sel, _ = random_inputs(H, seed=1)
    pos, count = fx.compact(sel)
    assert (count == sel.sum(1)).all() and pos.shape == (B, H - HS, int(count.max()))
    for causal in (True, False):
        a = fx.moh_block_mask(pos, count, T, causal=causal, block_size=8)
        b = fx.moh_block_mask(pos, count, T, causal=causal, block_size=8, build="create")
        assert torch.equal(a.to_dense(), b.to_dense())
        assert torch.equal(a.full_kv_num_blocks, b.full_kv_num_blocks)  # same full / partial split
        live = (a.kv_num_blocks + a.full_kv_num_blocks).sum().item()
        rows = (torch.arange(a.kv_indices.shape[2]) * 8 < count[..., None]).sum().item()  # q blocks with a real slot
        n_kv = -(-T // 8)
        assert live < rows * n_kv if causal else live == rows * n_kv


def test_flex_gradients_match_masked():
    a, b = pair("two_stage", GQA)
    a(X, COS, SIN)[0].pow(2).sum().backward()
    b(X, COS, SIN)[0].pow(2).sum().backward()  # CPU: routed heads through the SDPA backend (no flex backward)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.isfinite(pb.grad).all() and torch.allclose(pa.grad, pb.grad, atol=1e-4), n


@pytest.mark.parametrize("cfg", [MHA, GQA], ids=["mha", "gqa"])
def test_decode_step_equals_last_row_of_masked(cfg):
    a = MoHAttention(cfg, 0, MoHSpec(n_shared=HS, top_k=K, router="two_stage"))
    with torch.no_grad():
        out = a(X, COS, SIN)[0][:, -1]  # [B, d] the last token's masked-mode output
        q = apply_rope(a.q_proj(X).view(B, T, H, DH).transpose(1, 2), COS, SIN)[:, :, -1]  # [B, H, dh]
        k = apply_rope(a.k_proj(X).view(B, T, a.n_k, DH).transpose(1, 2), COS, SIN)  # cache [B, H_kv, T, dh]
        v = a.v_proj(X).view(B, T, a.n_v, DH).transpose(1, 2)
        routed = a.last.mask[:, -1, HS:].nonzero()[:, 1].view(B, K)  # [B, K]
        gates = a.last.gates[:, -1]  # [B, H]
        for method in ("gather", "flex"):
            z = fx.decode_step(q, k, v, routed, n_shared=HS, method=method)
            assert (z[~a.last.mask[:, -1]] == 0).all()
            err = (a.o_proj((z * gates[..., None]).reshape(B, D)) - out).abs().max().item()
            assert err <= 1e-5, (method, err)
        dense = fx.dense_decode(q, k, v)
        assert torch.allclose(dense[a.last.mask[:, -1]], z[a.last.mask[:, -1]], atol=1e-5)


def test_set_mode_and_clear_errors():
    a, _ = pair("two_stage", MHA)
    assert set_mode(a, "flex").spec.mode == "flex"
    with pytest.raises(ValueError, match="mode must be"):
        MoHSpec(mode="flash")
    q, k, v, sel, _ = random_inputs(H)
    with pytest.raises(ValueError, match="sel must be"):
        fx.moh_flex_attention(q, k, v, sel[:, :, 1:], n_shared=HS)
    with pytest.raises(ValueError, match="bool"):
        fx.compact(sel.float())
    with pytest.raises(ValueError, match="backend"):
        fx.moh_flex_attention(q, k, v, sel, n_shared=HS, backend="triton")
    with pytest.raises(ValueError, match="build"):
        fx.moh_flex_attention(q, k, v, sel, n_shared=HS, build="dense")
    with pytest.raises(ValueError, match="routed must be"):
        fx.decode_step(q[:, :, -1], k, v, torch.full((B, K), H - HS), n_shared=HS)
    with pytest.raises(ValueError, match="method"):
        fx.decode_step(q[:, :, -1], k, v, torch.zeros(B, K, dtype=torch.long), n_shared=HS, method="paged")


@pytest.mark.slow
def test_compiled_flex_equals_eager():  # about 15 s of torch.compile on CPU
    q, k, v, sel, gates = random_inputs(2, seed=2)
    z = fx.moh_flex_attention(q, k, v, sel, n_shared=HS, gates=gates, compile=True)
    assert (z - gated_reference(q, k, v, sel, gates)).abs().max().item() <= 1e-5


def test_benchmark_table_and_figure():
    from headlab.papers.moh.flex_bench import flex_benchmark, flex_speed

    df = flex_benchmark(
        ((1, 40),),
        n_heads=4,
        d_head=8,
        n_shared=2,
        top_k=1,
        fractions=(),
        repeats=2,
        warmup=0,
        device="cpu",
        dtype=torch.float32,
        compile=False,
        decode_batch=2,
        decode_lens=(40,),
    )
    assert len(df) == 8 and set(df["implementation"]) == {"dense", "masked", "flex", "gather", "dense_active"}
    assert (df.loc[df["implementation"] == "dense", "ratio_to_dense"] == 1).all()
    assert (df["max_err"] <= 1e-5).all() and (df["q25_s"] <= df["q75_s"]).all()
    assert len(flex_speed(df).axes) == 2
