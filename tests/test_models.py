"""headlab.models: offline models (slow: they need the cache `make setup` builds), errors, bos."""

import pytest
import torch

from headlab import data, heads, models
from headlab import eval as ev
from headlab.nn import Config, HeadlabLM


def english_paragraphs():
    """Three ~1000-character Wikipedia paragraphs from the shipped corpus (fixed by seed)."""
    return [p["text"] for p in data.paragraphs("encyclopedic", min_chars=900, max_chars=1200, n=3, seed=0)]


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown model 'gpt5-tiny'.*smollm2-135m"):
        models.load("gpt5-tiny")


def test_bad_attn_is_refused():
    with pytest.raises(ValueError, match="eager"):
        models.load("smollm2-135m", attn="flash_attention_9")


def test_hub_model_offline_names_the_offline_choices(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.OfflineError, match="smollm2-135m, gemma3-270m|gemma3-270m, smollm2-135m"):
        models.load("meta-llama/Llama-3.1-8B")


def test_headlab_checkpoint_loads_through_models_load(tmp_path):
    m = HeadlabLM(Config(vocab_size=258, d_model=32, n_layers=1, n_heads=2, max_seq_len=16))
    m.save(tmp_path / "ck")
    m2, tok = models.load(str(tmp_path / "ck"), attn="eager")
    assert m2.config.attn_impl == "eager" and tok.decode(models.encode(tok, "hé", bos=True)) == "hé"
    assert models.encode(tok, "ab", bos=True) == [256, 97, 98]


@pytest.fixture(scope="module")
def smollm2():
    return models.load("smollm2-135m", attn="eager")


@pytest.mark.slow
def test_smollm2_layout_and_perplexity(smollm2):
    model, tok = smollm2
    h = heads.Heads(model)
    assert (h.n_layers, h.n_heads, h.n_kv_heads, h.d_head) == (30, 9, 3, 64)
    ppl = ev.perplexity(model, tok, english_paragraphs(), bos=False, progress=False)
    assert 12 < ppl < 28, ppl  # measured 19.1; with a wrong RoPE row order 254 (next test)


@pytest.mark.slow
def test_perplexity_check_catches_a_wrong_rope_row_order(smollm2):
    """Interleaved instead of rotate-half rows in W_Q/W_K (the classic GGUF conversion bug)."""
    model, tok = smollm2
    perm = torch.cat([torch.arange(0, 64, 2), torch.arange(1, 64, 2)])
    saved = {}
    try:
        with torch.no_grad():
            for l in range(30):
                a = model.model.layers[l].self_attn
                for name, n in (("q_proj", 9), ("k_proj", 3)):
                    w = getattr(a, name).weight
                    saved[(l, name)] = w.clone()
                    w.copy_(w.view(n, 64, -1)[:, perm].reshape_as(w))
        bad = ev.perplexity(model, tok, english_paragraphs(), bos=False, progress=False)
    finally:
        with torch.no_grad():
            for (l, name), w in saved.items():
                getattr(model.model.layers[l].self_attn, name).weight.copy_(w)
    assert bad > 100, bad


@pytest.mark.slow
def test_bos_is_explicit(smollm2):
    _model, tok = smollm2
    plain = models.encode(tok, "Hello world", bos=False)
    assert models.encode(tok, "Hello world", bos=True) == [tok.bos_token_id] + plain
    gm, gtok = models.load("gemma3-270m", attn="eager")
    g_plain = models.encode(gtok, "Hello world", bos=False)
    assert gtok.bos_token_id not in g_plain  # Gemma's tokenizer would add <bos> by default
    assert models.encode(gtok, "Hello world", bos=True) == [2] + g_plain
    h = heads.Heads(gm)
    assert (h.n_layers, h.n_heads, h.n_kv_heads, h.d_head) == (18, 4, 1, 256)


@pytest.mark.slow
def test_cached_weights_match_gguf_metadata():
    info = (models.cache_path("smollm2-135m") / "headlab.json").read_text()
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in info


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_fast_load_gives_the_same_tokenizer_and_logits(name, tmp_path):
    """The pickled (lean) tokenizer and the cached load change no id and no logit against transformers' own path."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = models.cache_path(name)
    ref_tok = AutoTokenizer.from_pretrained(src)
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
    copy = tmp_path / name  # a fresh folder: the first call builds the pickle, the second reads it
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("model.safetensors", "tokenizer-*.pkl"))
    built, again = models.cached_tokenizer(copy), models.cached_tokenizer(copy)
    assert len(list(copy.glob("tokenizer-*.pkl"))) == 1
    model, tok = models.load(name, attn="eager")
    texts = english_paragraphs() + ["<bos> <start_of_turn>user\nHi — café ünï 123\t\n", ""]
    for t in (built, again, tok):
        assert type(t) is type(ref_tok) and t.all_special_ids == ref_tok.all_special_ids
        assert t.bos_token_id == ref_tok.bos_token_id and t.eos_token_id == ref_tok.eos_token_id
        for text in texts:
            assert t(text)["input_ids"] == ref_tok(text)["input_ids"]
            assert t.decode(ref_tok(text)["input_ids"]) == ref_tok.decode(ref_tok(text)["input_ids"])
    ids = torch.tensor([models.encode(tok, texts[0], bos=True)[:64]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)


def test_bos_for_reads_the_offline_table_else_the_tokenizer_default():
    class Tok:
        bos_token_id = 1

        def __init__(self, adds):
            self.adds = adds

        def __call__(self, text):
            return {"input_ids": ([1] if self.adds else []) + [7]}

    assert models.bos_for("gemma3-270m", Tok(False)) is True  # the table wins for offline models
    assert models.bos_for("smollm2-135m", Tok(True)) is False
    assert models.bos_for("org/hub-model", Tok(True)) is True and models.bos_for("org/hub-model", Tok(False)) is False
