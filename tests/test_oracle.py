"""An external oracle for headlab.heads: TransformerLens 4.3's TransformerBridge on SmolLM2-135M.

The bridge wraps its own copy of the Hugging Face model (``boot_transformers(..., hf_model=...)`` swaps that
copy's attention modules in place) and exposes ``blocks.L.attn.hook_z`` ``[batch, pos, head, d_head]`` and
``hook_pattern`` ``[batch, head, q, k]``, computed by its own attention code. headlab's ``capture`` reads the
o_proj input and the eager attention weights of an untouched copy. Both must agree for every layer and head
(measured: max |difference| 0.0 for z, patterns and logits, fp32 eager), and zeroing heads on the bridge's
``hook_z`` must equal ``heads.intervene(heads.zero(mask))``.

Optional: needs the ``oracle`` extra (``pip install -e .[oracle]``, transformer-lens==4.3.0) and the offline
SmolLM2 cache that ``make setup`` builds; skipped cleanly without either. ~10 s on 2 cores, of which ~3.5 s
import transformer_lens.
"""

import pytest
import torch

from headlab import heads, models

NAME = "smollm2-135m"
TOL = 1e-5  # fp32; the two code paths have agreed exactly (0.0) so far
# short texts, paired into batches of 2 and cut to the shorter of the pair (no padding)
TEXTS = [
    "The cat sat on the mat because it was warm.",
    "Paris is the capital of France and its largest city.",
    "When Mary and John went to the store, John gave a drink to",
    "def add(a, b):\n    return a + b  # adds two numbers",
]


@pytest.fixture(scope="module")
def oracle():
    pytest.importorskip("transformer_lens", reason="the oracle extra: pip install -e .[oracle]")
    src = models.cache_path(NAME)
    if not (src / "headlab.json").exists():
        pytest.skip(f"offline model cache {src} absent (make setup builds it)")
    from transformer_lens.model_bridge import TransformerBridge

    model, tok = models.load(NAME, attn="eager", dtype=torch.float32)
    copy, _ = models.load(NAME, attn="eager", dtype=torch.float32)  # the bridge rewires this one in place
    bridge = TransformerBridge.boot_transformers(str(src), hf_model=copy, tokenizer=tok, device="cpu")
    # token ids, not strings: the bridge prepends <bos> to string inputs
    ids = [models.encode(tok, t, bos=False) for t in TEXTS]
    batches = []
    for a, b in zip(ids[0::2], ids[1::2], strict=True):
        n = min(len(a), len(b))
        batches.append(torch.tensor([a[:n], b[:n]]))
    return model, bridge, batches


@pytest.mark.slow
def test_z_patterns_and_logits_match_transformer_bridge(oracle):
    model, bridge, batches = oracle
    h = heads.Heads(model)
    # the bridge got its own copy: headlab's model keeps Hugging Face's attention modules
    assert type(h.attn(0)).__name__ == "LlamaAttention"
    assert type(bridge.original_model.model.layers[0].self_attn).__name__ != "LlamaAttention"
    worst = {"z": 0.0, "pattern": 0.0, "logits": 0.0}
    for x in batches:
        with torch.no_grad():
            with heads.capture(model, z=True, pattern=True) as cache:
                logits = model(x).logits
            ref_logits, ref = bridge.run_with_cache(x)
        B, T = x.shape
        for l in range(h.n_layers):
            z, pat = cache.z[l], cache.pattern[l]
            ref_z, ref_pat = ref[f"blocks.{l}.attn.hook_z"], ref[f"blocks.{l}.attn.hook_pattern"]
            assert z.shape == ref_z.shape == (B, T, h.n_heads, h.d_head)
            assert pat.shape == ref_pat.shape == (B, h.n_heads, T, T)
            dz = (z - ref_z).abs().amax(dim=(0, 1, 3))  # [head]
            dp = (pat - ref_pat).abs().amax(dim=(0, 2, 3))  # [head]
            assert (dz <= TOL).all(), f"layer {l}: z differs per head by {dz.tolist()}"
            assert (dp <= TOL).all(), f"layer {l}: pattern differs per head by {dp.tolist()}"
            worst["z"] = max(worst["z"], dz.max().item())
            worst["pattern"] = max(worst["pattern"], dp.max().item())
        d = (logits - ref_logits).abs().max().item()
        assert d <= TOL * 10, f"logits differ by {d}"  # logits are O(10): allow their own rounding
        worst["logits"] = max(worst["logits"], d)
    print(f"headlab vs TransformerBridge, max |difference|: {worst}")


@pytest.mark.slow
def test_zeroing_heads_matches_transformer_bridge_hooks(oracle):
    """heads.intervene(heads.zero(mask)) with a per-row mask equals zeroing the same heads on hook_z."""
    model, bridge, batches = oracle
    h = heads.Heads(model)
    x = batches[1]
    mask = torch.zeros(x.shape[0], h.n_layers, h.n_heads, dtype=torch.bool)  # [batch, layer, head]
    mask[0, 0, 1] = mask[0, 9, 4] = mask[1, 9, 5] = mask[:, 20, 8] = True

    def zero_hook(l):
        def fn(z, hook):
            z = z.clone()
            z[mask[:, l][:, None, :].expand(-1, z.shape[1], -1)] = 0.0  # z: [batch, pos, head, d_head]
            return z

        return fn

    hooks = [(f"blocks.{l}.attn.hook_z", zero_hook(l)) for l in range(h.n_layers) if mask[:, l].any()]
    with torch.no_grad():
        plain = model(x).logits
        ref = bridge.run_with_hooks(x, fwd_hooks=hooks)
        with heads.intervene(model, heads.zero(mask)):
            got = model(x).logits
    assert (got - plain).abs().max() > 1e-2  # the edit does something, so agreement means something
    d = (got - ref).abs().max().item()
    print(f"zeroed heads, headlab vs TransformerBridge hooks, max |difference|: {d}")
    assert d <= TOL * 10
