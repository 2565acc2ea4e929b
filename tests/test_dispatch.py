"""headlab.heads on models dispatched by accelerate (``models.load(..., device_map=...)``).

A tiny random Llama is saved to a folder and loaded twice through ``headlab.models.load``: plainly, and with a
``device_map`` that keeps some layers on "cpu" and offloads others to "disk" (whole decoder layers, one
attention module on its own, and lm_head). accelerate then wraps the modules' forwards in ``AlignDevicesHook``s,
and an offloaded module's weights are ``meta`` except while that module runs (the hook on each leaf module
loads them from the offload folder just before its forward and drops them after). headlab's capture and
intervene hooks must see and produce the same tensors as on the undispatched model.

Two gaps found here and fixed in headlab.heads: a pattern-reading edit on an architecture without the
eager-attention tap is corrected through W_O after the attention module, when an offloaded o_proj's weight is
meta (``cpu @ meta`` returns uninitialised memory in torch 2.13, no error): it now recomputes through o_proj;
and ``Heads.w_o`` (read by lenses/probe.py and dormant_heads' ``ahon_wo``) now loads an offloaded weight.
"""

import pytest
import torch
import transformers as tf

from headlab import heads, models

N_LAYERS, N_HEADS = 4, 4
ATOL = 1e-6
# layer 0 on cpu; layers 1 and 3 on disk; layer 2's attention on disk, the rest of it on cpu; lm_head on disk
DEVICE_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2.self_attn": "disk",
    "model.layers.2.mlp": "cpu",
    "model.layers.2.input_layernorm": "cpu",
    "model.layers.2.post_attention_layernorm": "cpu",
    "model.layers.3": "disk",
    "model.norm": "cpu",
    "lm_head": "disk",
}
OFFLOADED = (1, 2, 3)


def char_tokenizer():
    """A 29-token character tokenizer (load() needs one in the folder; no model cache required)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {"<unk>": 0, "<s>": 1, " ": 2, **{chr(97 + i): 3 + i for i in range(26)}}
    t = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return tf.PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_llama")
    tok = char_tokenizer()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    tf.LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def pair(folder, tmp_path_factory):
    """(undispatched, dispatched, ids): the same weights, eager attention, fp32."""
    plain, tok = models.load(str(folder), attn="eager")
    split, _ = models.load(
        str(folder), attn="eager", device_map=DEVICE_MAP, offload_folder=tmp_path_factory.mktemp("offload")
    )
    texts = ["the cat sat on the mat", "a dog ran in the park"]
    ids = torch.tensor([models.encode(tok, t, bos=True)[:20] for t in texts])
    return plain, split, ids


def run(model, ids, **capture):
    with torch.no_grad(), heads.capture(model, **capture) as cache:
        logits = model(ids).logits
    return logits, cache


def close(a, b, atol=ATOL):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_device_map_attaches_accelerate_hooks(pair):
    from accelerate.hooks import AlignDevicesHook

    _, split, _ = pair
    assert split.hf_device_map == DEVICE_MAP
    hooks = {n: m._hf_hook for n, m in split.named_modules() if hasattr(m, "_hf_hook")}
    assert any(isinstance(hk, AlignDevicesHook) for hk in hooks.values())
    assert any(getattr(hk, "offload", False) for hk in hooks.values())
    for l in OFFLOADED:  # load() did not move the model: offloaded weights wait on disk
        assert split.model.layers[l].self_attn.o_proj.weight.device.type == "meta"
    assert split.model.layers[0].self_attn.o_proj.weight.device.type == "cpu"


def test_capture_is_identical_when_dispatched(pair):
    plain, split, ids = pair
    ref_logits, ref = run(plain, ids, z=True, pattern=True, v=True)
    logits, got = run(split, ids, z=True, pattern=True, v=True)
    assert sorted(got.z) == sorted(got.pattern) == sorted(got.v) == list(range(N_LAYERS))
    for l in range(N_LAYERS):
        assert got.z[l].shape == (*ids.shape, N_HEADS, 16)
        close(got.z[l], ref.z[l])
        close(got.pattern[l], ref.pattern[l])
        close(got.v[l], ref.v[l])
    close(logits, ref_logits)


def zero_mask(batch: int) -> torch.Tensor:
    mask = torch.zeros(batch, N_LAYERS, N_HEADS, dtype=torch.bool)  # [batch, layer, head], per row
    mask[0, 0, 1] = mask[0, 1, 0] = mask[1, 2, 3] = mask[:, 3, 2] = True  # offloaded layers 1-3 included
    return mask


def test_zeroing_heads_is_identical_when_dispatched(pair):
    plain, split, ids = pair
    mask = zero_mask(ids.shape[0])
    untouched, _ = run(split, ids, z=False)
    with torch.no_grad(), heads.intervene(plain, heads.zero(mask)):
        ref = plain(ids).logits
    with torch.no_grad(), heads.intervene(split, heads.zero(mask)):
        got = split(ids).logits
    close(got, ref)
    assert (got - untouched).abs().max() > 1e-3  # the edit changed the output (on both models)
    # one offloaded layer alone also changes it (its hook saw the edited z)
    only3 = torch.zeros_like(mask)
    only3[:, 3] = mask[:, 3]
    with torch.no_grad(), heads.intervene(split, heads.zero(only3)):
        assert (split(ids).logits - untouched).abs().max() > 1e-3


def test_pattern_and_value_edits_are_identical_when_dispatched(pair):
    """Edits that read this forward's pattern (through the eager-attention tap) and values."""
    plain, split, ids = pair

    def select(view):  # per input: heads whose rows send more than average weight to the first token
        share = view.pattern[..., 0].mean(-1)  # [batch, head]
        assert view.v is not None and view.v.shape == view.z.shape
        return share > share.mean(-1, keepdim=True)

    out = {}
    for key, model in (("plain", plain), ("split", split)):
        e = heads.zero_where(select)
        with torch.no_grad(), heads.intervene(model, e, needs=("pattern", "v")):
            out[key] = (model(ids).logits, e.zeroed)
    close(out["split"][0], out["plain"][0])
    for l in range(N_LAYERS):
        assert torch.equal(out["split"][1][l], out["plain"][1][l])
    assert any(z.any() for z in out["split"][1].values())


@pytest.mark.parametrize("n_zeroed", [1, 3])  # 1: the W_O-column correction path; 3 (> half): o_proj recomputed
def test_pattern_edit_without_tap_when_dispatched(pair, n_zeroed, monkeypatch):
    """Where no eager-attention tap exists, a pattern-reading edit runs after the attention module."""
    plain, split, ids = pair
    mask = torch.zeros(ids.shape[0], N_LAYERS, N_HEADS, dtype=torch.bool)
    mask[0, 1, :n_zeroed] = mask[1, 2, :n_zeroed] = True  # offloaded: a whole layer, an attention module
    with torch.no_grad(), heads.intervene(plain, heads.zero(mask)):
        ref = plain(ids).logits
    monkeypatch.setattr(heads, "_pattern_tap", lambda *a: None)
    e = heads.zero_where(lambda view: mask[:, view.layer].clone())
    with torch.no_grad(), heads.intervene(split, e, needs=("pattern",)):
        got = split(ids).logits
    close(got, ref)


def test_w_o_of_offloaded_layers(pair):
    plain, split, _ = pair
    for l in OFFLOADED:
        assert heads.Heads(split).o_proj(l).weight.device.type == "meta"
        close(heads.Heads(split).w_o(l), heads.Heads(plain).w_o(l))


def test_device_map_auto(folder, pair):
    """On a CPU-only machine "auto" places every module on cpu (no hooks, no hf_device_map: nothing to
    dispatch); with GPUs it spreads the layers over them. Either way capture and logits match."""
    plain, _, ids = pair
    auto, _ = models.load(str(folder), attn="eager", device_map="auto")
    if not torch.cuda.is_available():
        assert {p.device.type for p in auto.parameters()} == {"cpu"}
    atol = ATOL if not torch.cuda.is_available() else 1e-4
    dev = auto.get_input_embeddings().weight.device
    ref_logits, ref = run(plain, ids, z=True, pattern=True)
    logits, got = run(auto, ids.to(dev), z=True, pattern=True)
    close(logits.cpu(), ref_logits, atol)
    for l in range(N_LAYERS):
        close(got.z[l].cpu(), ref.z[l], atol)
        close(got.pattern[l].cpu(), ref.pattern[l], atol)
