"""The paper's numbers (as the notes quote them) and the thresholds of the rules, fixed before the runs."""

from __future__ import annotations

from ...claims import Published

PAPER = "attention_sinks"
ARXIV = "arXiv 2504.02732 (version not pinned in the notes)"

# ------------------------------------------------------------------------------------- the paper's numbers
PUB_K1 = Published("8B 45.97 / 70B 73.49 / 405B 78.29 %", f"Table 1 (ε = 0.8, T = 64), {ARXIV}")
PUB_K3 = Published(
    "≈ 0 % (fixed-⟨bos⟩ model, text only: 90.84 → 0.05 %)",
    f"Table 2, {ARXIV}",
    "Table 2's full rows are a secondary transcription [S]; the two 'remove ⟨bos⟩' rows are confirmed",
)
PUB_K4 = Published(
    "qualitative: the change spreads further without ⟨bos⟩", f"Fig. 2 (Gemma 7B, 'greatest' → 'best'), {ARXIV}"
)
PUB_K5_NLL = Published(
    "benchmarks drop without ⟨bos⟩ (e.g. ARC-E 80.77 → 28.49, HellaSwag 80.61 → 27.35)",
    f"Table 3 (Gemma 7B), {ARXIV}",
    "the non-RULER rows are a secondary transcription [S]",
)
PUB_K5_PK = Published("RULER-4096 82.57 → 0.00", f"Table 3 (Gemma 7B), {ARXIV}")
PUB_K6 = Published(
    "qualitative: the sink forms at the first token regardless (65.10 % without a fixed ⟨bos⟩)",
    f"§4 text and Table 2, {ARXIV}",
)
PUB_K7 = Published("sinks grow with context length; nearly none at ctx 128", f"Fig. 5 / Fig. 7, {ARXIV}")
PUB_K8 = Published(
    "fixed ⟨bos⟩: sink 90.84 → 0.05 %, loss 2.69 → 7.56; no fixed ⟨bos⟩: 65.10 %, loss 2.69 → 2.70",
    f"Table 2, {ARXIV}",
    "full rows [S]; the 'remove ⟨bos⟩' rows confirmed",
)
PUB_K9 = Published("qualitative: the ⟨bos⟩ value vector has the smallest norm", f"Fig. 4 (Gemma 7B), {ARXIV}")
PUB_K9_CONTRAST = Published("not claimed by the paper", "our question (fidelity review of 04, K9)")
PUB_PILOT = Published(
    "not claimed by the paper (Gu et al. 2024 tie sink emergence to tokens seen, learning rate and weight decay)",
    "our go/no-go premise for K7/K8 (issue 23; fidelity review of 04)",
)

# ------------------------------------------------------------------------------------------- fixed rules
SINK_HEAD_SCORE = 0.5  # K9: a query head is a sink head when its mean first-position score exceeds this
SINK_FORMED_PCT = 20.0  # K7/K8 premise: a pretraining run formed a sink if its sink@ε_lo ≥ 20 % (review's go/no-go)
K3_MAX_PCT, K3_FACTOR = 5.0, 10.0
K4_RATIO = 1.2  # review: lower bound of the 95 % interval of the ratio above 1.2
K5_NLL_RATIO = 1.2
K5_PK_PREMISE = 0.5  # K5-passkey premise: with ⟨bos⟩, the Wilson upper bound of retrieval accuracy reaches 50 %
K6_MIN_PCT = 50.0
K1_TARGET, K1_TOL = 45.97, 5.0
