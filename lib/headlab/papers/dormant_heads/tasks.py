"""Tasks: multiple choice by summed log-probability, or next-token loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ... import eval as ev
from ... import heads
from ...data import MCItem
from ...models import encode

# --------------------------------------------------------------------------------------------
# tasks: multiple choice or next-token loss
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """An evaluation whose forwards are the "inputs" of the protocol.

    ``kind="mc"``: lm-eval style multiple choice, each (context, choice) its own forward (so its
    own dormant set, as in the paper); metric = accuracy in %. ``kind="nll"``: next-token loss of
    ``texts`` (truncated to ``max_len``); metric = mean nats/token (lower is better).

    ``evaluator="lmeval"`` (``kind="mc"`` with MMLU items only) scores through lm-eval 0.4.13 instead
    (``headlab.lmeval.evaluate``, lm-eval's MMLU letter format with ``fewshot`` examples from the item's
    subject), as the paper did. Its forwards still run under any ``heads.intervene`` the caller holds, with
    ``HeadView.valid`` marking real tokens, so calibration and per-input zeroing work unchanged, but the
    inputs differ: one forward per *item* (the four one-token answers " A".." D" share their context) on
    ``(prompt + answer)[:-1]``, i.e. the prompt itself, in lm-eval's length order. ``per_item`` is still one
    entry per item, in item order.
    """

    name: str
    kind: str
    items: list = field(default_factory=list)  # MCItem for mc, str for nll
    bos: bool = False
    max_len: int = 128
    batch_size: int = 32
    labels: list | None = None  # per-item labels (e.g. text type), optional
    evaluator: str = "headlab"  # "headlab" or "lmeval" (mc only)
    fewshot: int = 0  # lm-eval's few-shot examples per prompt (evaluator="lmeval" only)

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "mc"

    def units(self) -> np.ndarray:
        """The unit of replication of each item, as an integer label (first-appearance order): for multiple choice,
        the (subject, prompt) it was made from, since generated items repeat prompts with other distractors and
        answer orders ("days" has 7 prompts) and such items do not vary independently; each text is its own
        unit. Bootstraps resample these units (``intervals.Clusters``)."""
        if self.kind != "mc":
            return np.arange(len(self.items))
        keys: dict = {}
        return np.array([keys.setdefault((it.subject, it.prompt), len(keys)) for it in self.items], dtype=int)

    def input_units(self, tok) -> np.ndarray | None:
        """The unit (``units``) of each row of an unablated pass's recorded scores, in the order ``evaluate`` runs
        its forwards: headlab's multiple choice runs every (item, choice) as its own row in ``mc_forwards``' length
        order, so the rows of one prompt's items share a label; texts run in order. None for
        ``evaluator="lmeval"``, whose forward order is lm-eval's (each row is then its own unit)."""
        if self.kind == "mc" and self.evaluator == "lmeval":
            return None
        if self.kind != "mc":
            return self.units()
        _, owner, order = mc_forwards(tok, self.items, self.bos)
        return self.units()[owner[order]]

    def n_inputs(self) -> int:
        """Forwards' rows per evaluation: one per (item, choice) for headlab's mc, one per text for nll. With
        ``evaluator="lmeval"`` one per item (lm-eval runs the shared context of one-token letter answers once);
        approximate: identical prompts would share a row too."""
        if self.kind == "mc" and self.evaluator == "lmeval":
            return len(self.items)
        return sum(len(it.choices) for it in self.items) if self.kind == "mc" else len(self.items)

    def evaluate(self, model, tok) -> dict:
        """``metric`` (acc % or nats/token) and ``per_item`` (bool correct, or per-text nll arrays)."""
        if self.evaluator not in ("headlab", "lmeval"):
            raise ValueError(f"evaluator must be 'headlab' or 'lmeval', not {self.evaluator!r}")
        if (self.evaluator == "lmeval" or self.fewshot) and self.kind != "mc":
            raise ValueError("evaluator='lmeval' and fewshot are for kind='mc' tasks")
        if self.fewshot and self.evaluator != "lmeval":
            raise ValueError("few-shot prompts need evaluator='lmeval'")
        if self.kind == "mc" and self.evaluator == "lmeval":
            from ... import lmeval

            r = lmeval.evaluate(
                model,
                tok,
                self.items,
                bos=self.bos,
                style="letter",
                num_fewshot=self.fewshot,
                batch_size=self.batch_size,
            )
            return {"metric": 100.0 * r["acc"], "per_item": r["correct"].astype(bool)}
        if self.kind == "mc":
            r = mc_accuracy(model, tok, self.items, bos=self.bos, batch_size=self.batch_size)
            return {"metric": 100.0 * r["acc"], "per_item": r["correct"].astype(bool)}
        if self.kind == "nll":
            nll = ev.token_nll(
                model, tok, self.items, bos=self.bos, max_len=self.max_len, batch_size=self.batch_size, progress=False
            )
            return {"metric": float(np.concatenate(nll).mean()), "per_item": nll}
        raise ValueError(f"task kind must be 'mc' or 'nll', not {self.kind!r}")


def mc_forwards(tok, items: Sequence[MCItem], bos: bool) -> tuple[list, np.ndarray, np.ndarray]:
    """The forwards of multiple choice: ``pairs`` (prompt ids, choice ids) for every (item, choice), ``owner`` (the
    item of each pair) and ``order`` (the pairs in the order they run: longest first, stable), the one place that
    order is decided (``mc_logprobs`` runs it; ``Task.input_units`` labels its rows)."""
    pairs, owner = [], []
    for i, it in enumerate(items):
        for c in it.choices:
            pairs.append((encode(tok, it.prompt, bos), encode(tok, c, False)))
            owner.append(i)
    order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")
    return pairs, np.asarray(owner, int), order


@torch.no_grad()
def mc_logprobs(model, tok, items: Sequence[MCItem], bos: bool, batch_size: int = 32) -> np.ndarray:
    """Summed log p(choice | prompt) for every (item, choice), each pair its own forward, exactly
    as ``headlab.eval.continuation_logprobs`` (same encoding, padding, length-sorted batches and
    ``heads.token_mask``), except that the vocabulary projection of a batch runs as **one** matmul
    over all scored positions instead of one per row: with Gemma's 262k-row lm_head the per-row
    matrix-vector products cost more than the forward itself."""
    dev = model.device
    pairs, _, order = mc_forwards(tok, items, bos)
    out = np.zeros(len(pairs))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, valid = ev.pad([pairs[i][0] + pairs[i][1] for i in idx])  # the core's right-padding
        with heads.token_mask(valid.to(dev)):
            h = ev.final_hidden(model, ids.to(dev))
        rows, cols, tgt, owner = [], [], [], []
        for r, i in enumerate(idx):
            ctx, cont = pairs[i]
            n = len(cont)
            rows += [r] * n
            cols += list(range(len(ctx) - 1, len(ctx) + n - 1))
            tgt += cont
            owner += [i] * n
        lp = ev.logits_from_hidden(model, h[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)])
        lp = lp.log_softmax(-1).gather(-1, torch.tensor(tgt, device=dev)[:, None])[:, 0].double().cpu().numpy()
        np.add.at(out, np.asarray(owner), lp)
    return out


def mc_accuracy(model, tok, items: Sequence[MCItem], bos: bool, batch_size: int = 32) -> dict:
    """``headlab.eval.multiple_choice``'s ``acc`` (argmax summed log-likelihood) from ``mc_logprobs``."""
    lp = mc_logprobs(model, tok, items, bos, batch_size)
    correct, k = [], 0
    for it in items:
        n = len(it.choices)
        correct.append(int(np.argmax(lp[k : k + n])) == it.answer)
        k += n
    return {"acc": float(np.mean(correct)), "correct": np.array(correct), "logprobs": lp, "n": len(items)}


def metric_from_items(task: Task, per_item, idx=None) -> float:
    """The task metric from per-item results (optionally a resample ``idx``)."""
    if idx is None:
        idx = np.arange(len(per_item))
    if task.kind == "mc":
        return 100.0 * float(np.mean(np.asarray(per_item)[idx]))
    arrs = [per_item[i] for i in idx]
    return float(np.concatenate(arrs).mean())
