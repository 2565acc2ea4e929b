"""headlab.lmeval: lm-eval 0.4.13 on a preloaded model, offline, on a tiny random Llama with SmolLM2's real
tokenizer: the padding mask under per-input edits, lm-eval cloze = headlab cloze, the 5-shot letter prompts,
and the dormant-heads protocol through lm-eval's forwards."""

import re

import numpy as np
import pytest
import torch
import transformers as tf

from headlab import data, heads, models
from headlab import eval as ev

lmeval = pytest.importorskip("headlab.lmeval")

SUBJECTS = ["astronomy", "virology", "world religions"]


@pytest.fixture(scope="module")
def tok():
    return models.cached_tokenizer(models.cache_path("smollm2-135m"))


@pytest.fixture(scope="module")
def model(tok):
    """A random 2-layer Llama over SmolLM2's 49k-token vocabulary (hidden 32, 4 query heads over 2 KV heads)."""
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    m = tf.LlamaForCausalLM(cfg).eval()
    m.set_attn_implementation("eager")
    return m


@pytest.fixture(scope="module")
def items():
    """Two MMLU items from each of three subjects (short ones, to keep the forwards cheap)."""
    out = []
    for s in SUBJECTS:
        its = sorted(data.mmlu(None, subjects=[s]), key=lambda it: len(it.prompt) + max(map(len, it.choices)))
        out += its[:2]
    return out


def _last_norm(view: heads.HeadView, masked: bool) -> torch.Tensor:
    """Each head's ||z|| at the input's last token ``[batch, head]`` (as the last-token output-norm scores):
    the last *real* token when ``masked``, else the last position of the padded batch."""
    norm = view.z.float().norm(dim=-1)  # [batch, pos, head]
    T = norm.shape[1]
    last = view.valid.sum(1) - 1 if masked else torch.full((norm.shape[0],), T - 1)
    return norm[torch.arange(norm.shape[0]), last]


def test_padding_mask_makes_per_input_edits_batch_invariant(model, tok, items):
    # the threshold: the median head statistic of an unablated pass
    stats, seen = [], []

    def record(view):
        stats.append(_last_norm(view, True))
        seen.append(view.valid.sum(1).tolist())

    with heads.intervene(model, record):
        base = lmeval.evaluate(model, tok, items, bos=False, style="cloze", batch_size=8)
    tau = float(torch.cat(stats).median())
    # edits see exactly the recorded real lengths (one list per layer per forward), and there is padding
    assert seen == [L for L in base["lengths"] for _ in range(2)]
    assert any(len(set(L)) > 1 for L in base["lengths"])
    # ... which are the lengths of lm-eval's inputs (context + continuation)[:-1], never inferred from id 0
    reps = sorted(len(c) + len(x) - 1 for _, c, x in _requests(model, tok, items))
    assert sorted(sum(base["lengths"], [])) == reps

    def run(bs: int, masked: bool):
        edit = heads.zero_where(lambda v: _last_norm(v, masked) > tau)
        with heads.intervene(model, edit):
            return lmeval.evaluate(model, tok, items, bos=False, style="cloze", batch_size=bs)

    one, eight = run(1, True), run(8, True)
    assert all(len(L) == 1 for L in one["lengths"])
    np.testing.assert_allclose(one["logprobs"], eight["logprobs"], atol=1e-5, rtol=0)
    assert np.abs(one["logprobs"] - base["logprobs"]).max() > 1e-3  # the edit does change the model
    # without the mask, padded rows average over padding too: the same edit then depends on the batch
    unmasked1, unmasked8 = run(1, False), run(8, False)
    np.testing.assert_allclose(unmasked1["logprobs"], one["logprobs"], atol=1e-5, rtol=0)  # no padding at bs=1
    assert np.abs(unmasked8["logprobs"] - one["logprobs"]).max() > 1e-3


def _requests(model, tok, items):
    """lm-eval's (request, context ids, continuation ids) after its grouping of shared contexts."""
    lm = lmeval.HeadlabHFLM(model, tok, bos=False, batch_size=8)
    reqs = []
    for it in items:
        for c in it.choices:
            ce, xe = lm._encode_pair(it.prompt, c)
            reqs.append(((it.prompt, c), ce, xe))
    # one forward per distinct context + continuation[:-1] (lm-eval's logits cache)
    uniq = {}
    for r in reqs:
        key = tuple(r[1] + r[2][:-1])
        if key not in uniq or len(r[2]) > len(uniq[key][2]):
            uniq[key] = r
    return list(uniq.values())


@pytest.mark.parametrize("bos", [False, True])
def test_lmeval_cloze_equals_headlab_cloze(model, tok, items, bos):
    hl = ev.multiple_choice(model, tok, items, bos=bos, batch_size=8, progress=False)
    lm = lmeval.evaluate(model, tok, items, bos=bos, style="cloze", batch_size=8)
    assert lm["same_tokens"] == 1.0  # lm-eval's ids are headlab's encode(prompt, bos) + encode(choice, False)
    assert lm["n"] == len(items) and lm["logprobs"].shape == hl["logprobs"].shape
    np.testing.assert_allclose(lm["logprobs"], hl["logprobs"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(lm["correct"], hl["correct"])
    assert lm["acc"] == pytest.approx(hl["acc"])
    assert lm["prompts"] == [it.prompt for it in items]
    assert lm["continuations"] == [list(it.choices) for it in items]


def test_tok_encode_bos_and_continuations(model, tok):
    for bos in (False, True):
        lm = lmeval.HeadlabHFLM(model, tok, bos=bos, batch_size=2)
        ctx, cont = lm._encode_pair("The capital of France is", " Paris")
        assert ctx == models.encode(tok, "The capital of France is", bos)
        assert cont == models.encode(tok, " Paris", False)
        assert lm.tok_encode(" Paris", add_special_tokens=False) == models.encode(tok, " Paris", False)
    with pytest.raises(ValueError, match="fixed batch size"):
        lmeval.HeadlabHFLM(model, tok, bos=False, batch_size="auto")


def test_five_shot_letter_prompts(model, tok, items, tmp_path):
    state = torch.get_rng_state()
    r = lmeval.evaluate(model, tok, items, bos=False, style="letter", num_fewshot=5, batch_size=4, folder=tmp_path)
    assert torch.equal(state, torch.get_rng_state())  # lm-eval's seeding is switched off
    assert r["n"] == len(items) and r["correct"].dtype == bool and r["lm_eval_version"] == "0.4.13"
    assert r["inputs"] == len(items)  # " A".." D" share one forward per item
    rows = data.mmlu_rows()
    asked = {it.prompt.split("\n\n", 1)[1].rsplit("\nAnswer:", 1)[0] for it in items}
    for it, prompt, conts in zip(items, r["prompts"], r["continuations"], strict=True):
        assert conts == [" A", " B", " C", " D"]
        subj = it.subject.replace("_", " ")
        head = f"The following are multiple choice questions (with answers) about {subj}.\n\n"
        assert prompt.startswith(head)
        blocks = prompt[len(head) :].split("\n\n")
        assert len(blocks) == 6 and blocks[-1].endswith("\nAnswer:")
        same_subject = {row["question"].strip() for row in rows if row["topic"] == it.subject}
        question = it.prompt.split("\n\n", 1)[1].rsplit("\nAnswer:", 1)[0]
        assert blocks[-1].startswith(question + "\nA. ")
        for b in blocks[:5]:
            assert re.search(r"\nAnswer: [ABCD]$", b)
            q = b.split("\nA. ")[0]
            assert q in same_subject  # from the same subject
            assert q not in asked  # never an evaluated item (this one or another)
    # the held-out pool is deterministic in the seed
    fs = sorted((tmp_path / "data").glob("*.fewshot.jsonl"))
    assert len(fs) == len(SUBJECTS)
    first = [f.read_text() for f in fs]
    lmeval.write_mmlu_tasks(tmp_path, items, "letter", seed=0)
    assert [f.read_text() for f in fs] == first
    lmeval.write_mmlu_tasks(tmp_path, items, "letter", seed=1)
    assert [f.read_text() for f in fs] != first


def test_letter_needs_mmlu_items_and_cloze_is_zero_shot(model, tok, tmp_path):
    odd = [data.MCItem("Two plus two equals", (" four", " five"), 0, "arith")]
    with pytest.raises(data.DataError, match="not an MMLU row"):
        lmeval.write_mmlu_tasks(tmp_path, odd, "letter")
    with pytest.raises(ValueError, match="0-shot"):
        lmeval.evaluate(model, tok, odd, bos=False, style="cloze", num_fewshot=1)
    r = lmeval.evaluate(model, tok, odd, bos=True, style="cloze", batch_size=2)  # any MCItem works as cloze
    hl = ev.multiple_choice(model, tok, odd, bos=True, progress=False)
    np.testing.assert_allclose(r["logprobs"], hl["logprobs"], atol=1e-4, rtol=0)


def test_dormant_task_through_lmeval(model, tok, items):
    from headlab.papers import dormant_heads as D

    task = D.Task("mmlu", "mc", items, bos=False, batch_size=4, evaluator="lmeval", fewshot=1)
    assert task.n_inputs() == len(items)
    cal = D.calibrate(model, tok, task, ["ahon_ln", "awft"])
    assert cal.scores["ahon_ln"].shape == (task.n_inputs(), 2, 4)
    assert cal.per_item.shape == (len(items),) and cal.per_item.dtype == bool
    assert np.isfinite(cal.scores["awft"]).all()
    tau = D.threshold(cal.scores["ahon_ln"], 0.25, flag_high=False)
    r, sel = D.ablate(model, tok, task, "ahon_ln", tau)
    assert r["per_item"].shape == (len(items),)
    assert sum(sel.rows.values()) == 2 * len(items)  # each layer saw every item's single forward
    assert 5.0 < sel.achieved_pct() < 50.0
    with pytest.raises(ValueError, match="evaluator='lmeval'"):
        D.Task("t", "mc", items, fewshot=5).evaluate(model, tok)


def test_crosscheck_table(model, tok, items):
    df = lmeval.crosscheck({"tiny": (model, tok, False)}, items[:3], batch_size=4, fewshot=1)
    assert list(df.method) == ["headlab cloze", "lm-eval cloze", "lm-eval letter 0-shot", "lm-eval letter 1-shot"]
    assert (df.n == 3).all() and (df.acc_lo <= df.acc).all() and (df.acc <= df.acc_hi).all()
    cloze = df.set_index("method").loc["lm-eval cloze"]
    assert cloze.agree_pct == 100.0 and cloze.max_abs_dlogprob < 1e-4 and cloze.same_tokens_pct == 100.0
    assert df.set_index("method").loc["lm-eval letter 0-shot", "inputs"] == 3
