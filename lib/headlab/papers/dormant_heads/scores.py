"""The dormancy score functions, each of a head's view at the input of the output projection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ... import heads

# --------------------------------------------------------------------------------------------
# score functions
# --------------------------------------------------------------------------------------------

EPS = 1e-12


def _valid(view: heads.HeadView, batch: int, pos: int, device) -> torch.Tensor:
    """``[batch, pos]`` float mask of real tokens (all ones when the caller declared none)."""
    v = view.valid
    if v is None or v.shape != (batch, pos):
        return torch.ones(batch, pos, device=device)
    return v.to(device=device, dtype=torch.float32)


def _mean_over_pos(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x ``[batch, pos, head]``, m ``[batch, pos]`` -> masked mean over pos ``[batch, head]``."""
    return (x * m[:, :, None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)


def _ln(s: torch.Tensor) -> torch.Tensor:
    """Divide by the mean over the heads of the same layer and input (the paper's "(LN)")."""
    return s / s.mean(-1, keepdim=True).clamp_min(EPS)


def ahon(view: heads.HeadView) -> torch.Tensor:
    """Average head output norm: mean over real positions i of ||z_i|| (pre-W_O)."""
    z = view.z.float()
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    return _mean_over_pos(z.norm(dim=-1), m)


def ahon_ln(view):
    return _ln(ahon(view))


def _pattern_rows(view: heads.HeadView):
    a = view.pattern
    if a is None:
        raise heads.AttentionImplError(
            "this score needs attention weights: intervene(..., needs=('pattern',)) on an eager-attention model"
        )
    a = a.float()  # [batch, head, q, k]
    m = _valid(view, a.shape[0], a.shape[2], a.device)
    return a, m


def awft(view):
    """Average weight on the first token: mean over real query rows of A[i, 0] (row 0 gives 1)."""
    a, m = _pattern_rows(view)
    return _mean_over_pos(a[..., 0].transpose(1, 2), m)


def awft_ln(view):
    return _ln(awft(view))


def entropy(view):
    """Average entropy (nats) of the query rows' attention distributions."""
    a, m = _pattern_rows(view)
    ent = -torch.special.xlogy(a, a).sum(-1)  # [batch, head, q]; 0 log 0 = 0
    return _mean_over_pos(ent.transpose(1, 2), m)


def entropy_ln(view):
    return _ln(entropy(view))


def _values(view):
    if view.v is None:
        raise ValueError("this score needs value vectors: intervene(..., needs=('v',))")
    return view.v.float()  # [batch, pos, head, d_head], already per query head


def ftvvn(view):
    """Norm of the first token's value vector (per query head; equal within a GQA group)."""
    return _values(view)[:, 0].norm(dim=-1)


def ftvvn_ln(view):
    return _ln(ftvvn(view))


def avvn(view):
    """Average value-vector norm over real positions."""
    v = _values(view)
    m = _valid(view, v.shape[0], v.shape[1], v.device)
    return _mean_over_pos(v.norm(dim=-1), m)


def avvn_ln(view):
    return _ln(avvn(view))


def _last_norm(view):
    z = view.z.float()
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    last = (m.sum(1).long() - 1).clamp_min(0)  # right padding: real tokens are a prefix
    zl = z[torch.arange(z.shape[0], device=z.device), last]  # [batch, head, d_head]
    return zl.norm(dim=-1)


def lthon(view):
    """Norm of the head output at the last real token."""
    return _last_norm(view)


def lthon_ln(view):
    """Last-token norm divided by the layer mean of the per-head *average* output norms."""
    return _last_norm(view) / ahon(view).mean(-1, keepdim=True).clamp_min(EPS)


def lthon_hn(view):
    """Last-token norm divided by the same head's average output norm."""
    return _last_norm(view) / ahon(view).clamp_min(EPS)


def ahon_wo(view):
    """App. A.1 variant: average norm of the head's d_model contribution W_O^(h) z_i (post-W_O)."""
    z = view.z.float()
    w_o = view.heads.w_o(view.layer).float()  # [head, d_head, d_model], nn.Linear or GPT-2's Conv1D
    out = torch.einsum("bphd,hdm->bphm", z, w_o)
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    return _mean_over_pos(out.norm(dim=-1), m)


def ahon_wo_ln(view):
    return _ln(ahon_wo(view))


@dataclass(frozen=True)
class Score:
    name: str
    label: str  # the paper's name
    abbr: str  # the paper's abbreviation
    flag_high: bool  # True: head flagged when score > threshold (AWFT); else when score < threshold
    needs: tuple[str, ...]
    fn: Callable[[heads.HeadView], torch.Tensor] | None  # None: random


_S = [
    Score("random", "Random", "Rand", False, (), None),
    Score("awft", "Avg Weight of First Token", "AWFT", True, ("pattern",), awft),
    Score("awft_ln", "Avg Weight of First Token (LN)", "AWFT (LN)", True, ("pattern",), awft_ln),
    Score("entropy", "Avg Entropy of Query Distributions", "AEQD", False, ("pattern",), entropy),
    Score("entropy_ln", "Avg Entropy of Query Distributions (LN)", "AEQD (LN)", False, ("pattern",), entropy_ln),
    Score("ftvvn", "First Token Value Vector Norm", "FTVVN", False, ("v",), ftvvn),
    Score("ftvvn_ln", "First Token Value Vector Norm (LN)", "FTVVN (LN)", False, ("v",), ftvvn_ln),
    Score("avvn", "Avg Value Vector Norm", "AVVN", False, ("v",), avvn),
    Score("avvn_ln", "Avg Value Vector Norm (LN)", "AVVN (LN)", False, ("v",), avvn_ln),
    Score("lthon", "Last Token Head Output Norm", "LTHON", False, (), lthon),
    Score("lthon_ln", "Last Token Head Output Norm (LN)", "LTHON (LN)", False, (), lthon_ln),
    Score("lthon_hn", "Last Token Head Output Norm (HN)", "LTHON (HN)", False, (), lthon_hn),
    Score("ahon", "Avg Head Output Norm", "AHON", False, (), ahon),
    Score("ahon_ln", "Avg Head Output Norm (LN)", "AHON (LN)", False, (), ahon_ln),
    Score("ahon_wo", "Avg Head Output Norm after W_O", "AHON-WO", False, (), ahon_wo),
    Score("ahon_wo_ln", "Avg Head Output Norm after W_O (LN)", "AHON-WO (LN)", False, (), ahon_wo_ln),
]
SCORES: dict[str, Score] = {s.name: s for s in _S}
PAPER_SCORES = [s.name for s in _S if not s.name.startswith("ahon_wo")]  # the 14 of the ICLR notebook


def check_scores(names: Sequence[str]):
    bad = [n for n in names if n not in SCORES]
    if bad:
        raise KeyError(f"unknown score function(s) {bad}; known: {list(SCORES)}")
