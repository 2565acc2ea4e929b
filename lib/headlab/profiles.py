"""The three profiles and every notebook's parameters under each: the one place they live.

* ``smoke``  CPU, offline, deterministic, a few minutes per notebook (the stored default; CI, nbval)
* ``gpu``    one H100-class GPU, still offline: longer training, bigger evaluations
* ``paper``  the paper's own models and data from the Hugging Face hub (needs internet)

A notebook's ``parameters`` cell holds ``profile = "smoke"`` and a few knobs; its next cell calls
``P = resolve("<notebook>", profile, **knobs)``, which validates everything *before* any compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PROFILES = ("smoke", "gpu", "paper")
# ``python -m headlab run --profile gpu --rehearse NB`` sets this: the gpu profile's lists (models, score
# functions, variants, seeds, knobs) at toy sizes on the CPU, figures under .cache/rehearse, to catch a
# broken gpu code path before it costs device time. Its numbers mean nothing.
REHEARSE_ENV = "HEADLAB_REHEARSE"


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Notebook:
    name: str  # file stem in notebooks/
    paper: str  # figures/<paper>/<profile>/
    title: str
    params: dict[str, dict] = field(default_factory=dict)  # profile -> parameters
    paper_needs_hub: bool = True  # False where profile=paper trains its own models (nothing to download)
    rehearse: dict | None = None  # toy sizes for a CPU rehearsal of the gpu profile (see ``resolve``)


def _nb(
    name,
    paper,
    title,
    smoke: dict,
    gpu: dict | None = None,
    paper_: dict | None = None,
    paper_needs_hub: bool = True,
    rehearse: dict | None = None,
) -> Notebook:
    """Profiles inherit: gpu = smoke + gpu overrides; paper = gpu + paper overrides."""
    g = {**smoke, **(gpu or {})}
    return Notebook(
        name, paper, title, {"smoke": smoke, "gpu": g, "paper": {**g, **(paper_ or {})}}, paper_needs_hub, rehearse
    )


NOTEBOOKS: dict[str, Notebook] = {
    nb.name: nb
    for nb in [
        _nb(
            "00_headlab_tour",
            "tour",
            "A tour of headlab",
            smoke=dict(
                models=["smollm2-135m", "gemma3-270m"],
                text_type="prose",
                n_paragraphs=8,
                max_tokens=128,
                zero_layer=20,
                zero_head=0,
                train_steps=60,
                train_seq=64,
                train_batch=16,
                seed=0,
                device="cpu",
            ),
            gpu=dict(n_paragraphs=64, max_tokens=256, train_steps=2000, train_batch=64, train_seq=256, device="cuda"),
            paper_=dict(models=["HuggingFaceTB/SmolLM2-135M", "google/gemma-3-270m"]),
            rehearse=dict(n_paragraphs=4, max_tokens=64, train_steps=10, train_batch=4, train_seq=64),
        ),
        _nb(
            "04_attention_sinks",
            "attention_sinks",
            "Why do LLMs attend to the first token? (Barbero et al. 2025)",
            smoke=dict(
                models=["gemma3-270m", "smollm2-135m"],
                bos_model="gemma3-270m",
                device="cpu",
                dtype="float32",
                seed=0,
                prompt_types=["prose", "encyclopedic", "news"],
                n_prompts=16,
                T=64,
                eps=[0.3, 0.8],
                perturb_text=(
                    "Marie Curie was a physicist and chemist who carried out pioneering research on "
                    "radioactivity. She is often described as one of the greatest scientists of her "
                    "century, and her laboratory notebooks are still kept in lead-lined boxes because "
                    "they remain radioactive."
                ),
                perturb_old="greatest",
                perturb_new="best",
                n_map_heads=4,
                map_tokens=20,
                apostrophe_types=["prose", "dialogue", "news", "encyclopedic"],
                n_apostrophe_prompts=16,
                nll_per_type=1,
                nll_max_len=128,
                passkey_items=8,
                passkey_filler=10,
                sim_sinks=[0.0, 0.5, 0.9, 0.99],
                sim_tokens=32,
                sim_dim=32,
                sim_layers=24,
                pretrain_live=True,
                pretrain_parts=["ctx_sweep", "variants"],
                ctx_variant="bos_causal",
                lm=dict(d_model=64, n_layers=2, n_heads=4, d_mlp=256),
                ctx_lengths=[64, 128, 256, 512],
                tokens_per_step=2048,
                pretrain_steps=60,
                pretrain_lr=3e-3,
                pretrain_warmup=10,
                pretrain_eval_every=15,
                eval_T=64,
                n_eval_windows=16,
                variant_ctx=128,
                variants=["nobos_causal", "nobos_intradoc", "bos_causal", "bos_intradoc"],
                amp=False,
            ),
            # gpu: a ~50M headlab model (12 x 512, 8 heads, SwiGLU 2048; byte vocab) at ctx 128..2048 with 65,536
            # tokens per step (batch 512..32) for 200 steps (~13M tokens, ~5 passes over the shipped corpus) each;
            # split runs with pretrain_parts=["ctx_sweep"] / ["variants"] to stay within 8 min per run.
            gpu=dict(
                device="cuda",
                n_prompts=128,
                n_apostrophe_prompts=64,
                nll_per_type=16,
                nll_max_len=512,
                passkey_items=32,
                passkey_filler=120,
                lm=dict(d_model=512, n_layers=12, n_heads=8, d_mlp=2048),
                ctx_lengths=[128, 256, 512, 1024, 2048],
                tokens_per_step=65536,
                pretrain_steps=200,
                pretrain_lr=1e-3,
                pretrain_warmup=30,
                pretrain_eval_every=20,
                eval_T=128,
                n_eval_windows=64,
                variant_ctx=1024,
                amp=True,
            ),
            # paper: the paper's hub models (eager attention, bf16); pretraining is not redone, Fig. 5/7 and
            # Table 2 come from the committed gpu-profile CSVs.
            paper_=dict(
                models=["meta-llama/Llama-3.1-8B", "google/gemma-7b"],
                bos_model="google/gemma-7b",
                dtype="bfloat16",
                n_prompts=170,
                pretrain_live=False,
            ),
            rehearse=dict(
                n_prompts=4,
                n_apostrophe_prompts=4,
                nll_per_type=1,
                nll_max_len=64,
                passkey_items=2,
                passkey_filler=10,
                lm=dict(d_model=32, n_layers=2, n_heads=4, d_mlp=64),
                ctx_lengths=[64, 128],
                tokens_per_step=512,
                pretrain_steps=6,
                pretrain_warmup=2,
                pretrain_eval_every=3,
                eval_T=32,
                n_eval_windows=4,
                variant_ctx=64,
                amp=False,
            ),
        ),
        _nb(
            "03_heads_cooperate",
            "heads_cooperate",
            "Do attention heads compete or cooperate during counting? (Zsámboki et al. 2025)",
            smoke=dict(
                seed=0,
                device="cpu",
                out="smoke",
                variant="A",
                l_max=16,
                noise=0.3,
                lm_weight=1.0,
                end_prob=0.9,
                d_model=32,
                heads=[1, 2, 4, 8],
                seeds=[0, 1],
                steps=500,
                batch=128,
                lr=3e-3,
                eval_every=25,
                n_eval=1000,
                n_test=2000,
                n_fit=1000,
                grid_per_cell=4,
                dyn=dict(A=[1, 2], A_LM=[1, 2]),
                dyn_seeds=[0, 1, 2, 3, 4, 5],
                plateau_min_steps=200,
                b_heads=[1, 2, 4, 8],
                b_seeds=[0],
                b_steps=400,
                b_lr=None,  # None: lr
                b_min_lr_ratio=1.0,  # 1.0: constant; < 1: cosine decay to b_lr * b_min_lr_ratio
                # checkpoints of the main grid, analysed for the dynamics of the calibration gap and inert heads
                ckpt_steps=[100, 250, 500],
                # initialisation ablation (beside the main grid's N(0, 0.02²) init with the pre-attention RMSNorm)
                init_arms=[["torch", True], ["normal", False], ["torch", False]],
                abl_heads=[1, 2],
                abl_seeds=[0, 1],
                workers=2,
                cache=False,
            ),
            # gpu = the full grid: 5 head counts x 10 seeds, 3000 steps at batch 256, strings up to 32 digits (the
            # dynamics of format A come from that grid; A_LM adds H=1,2 x 10 seeds; format B 4 x 3 runs). The models
            # have ~10k parameters, so training and analysis run in single-threaded CPU worker processes (faster than
            # one GPU stream at this size): ~8,000 CPU-seconds, ~9-10 min on 15 cores. Trained runs are cached in
            # .cache/count01, so a rerun only re-analyses.
            gpu=dict(
                out="gpu",
                l_max=32,
                heads=[1, 2, 3, 4, 8],
                seeds=list(range(10)),
                steps=3000,
                batch=256,
                lr=1e-3,
                eval_every=50,
                n_test=4000,
                n_fit=2000,
                grid_per_cell=2,
                dyn=dict(A=[1, 2, 3, 4, 8], A_LM=[1, 2]),
                dyn_seeds=list(range(10)),
                plateau_min_steps=300,
                # format B to convergence: 10 seeds at H = 4 and 8 (K8b), cosine decay (a constant rate leaves the
                # accuracy oscillating between 0.93 and 1.0 in a CPU pilot)
                b_heads=[4, 8],
                b_seeds=list(range(10)),
                b_steps=4000,
                b_lr=3e-3,
                b_min_lr_ratio=0.1,
                ckpt_steps=[250, 500, 1000, 2000, 3000],
                abl_seeds=list(range(10)),
                workers=15,
                cache=True,
            ),
            # paper = gpu: the paper trains its own small models, no hub model is involved.
            paper_=dict(out="paper"),
            paper_needs_hub=False,
        ),
        _nb(
            "02_dha_fusion",
            "dha_fusion",
            "DHA: decoupled-head attention by adaptive head fusion (Chen et al. 2024)",
            smoke=dict(
                seed=0,
                arm_seeds=[0],
                device="cpu",
                # the MHA source, pretrained in the notebook on the shipped corpus (bytes)
                d_model=64,
                n_layers=4,
                n_heads=8,
                seq=64,
                batch=16,
                pretrain_steps=250,
                pretrain_lr=3e-3,
                # arms: KV-head budgets, a training budget in steps (search + fusion + CT), fusion settings
                budgets=[0.25],
                total_steps=60,
                fusion_steps=40,
                split_fusion_steps=[10, 25, 40],
                lite_arm=False,
                lr=1e-3,
                omega_lr=1e-2,
                lam_max=500.0,
                ramp=0.8,
                warmup=5,
                eval_every=10,
                gqa_extra_steps=0,
                eval_batches=2,
                eval_batch=16,
                calib_rows=8,
                interp_alphas=[0.0, 0.5, 0.75, 1.0],
                # the pretrained LM for the analysis figures (inference only): its KV heads, budgets of them;
                # analysis_lm=False: no pretrained weights, the MHA source doubles as the analysis model
                analysis_lm=True,
                lm_model="smollm2-135m",
                lm_bos=False,
                lm_budgets=[2 / 3, 1 / 3],
                lm_seq=128,
                lm_calib_rows=4,
                lm_eval_rows=4,
                decode_batch=1,
                decode_prompt=16,
                decode_new=16,
                decode_pairs=3,  # A B B A quads timing each decode against MHA's (benchmark harness)
            ),
            # gpu (one H100, offline, no pretrained weights there: analysis_lm=False, the MHA source doubles as the
            # analysis model): a 6 x 512 MHA byte model (8 heads x 64), 2 seeds of the main arms at 25 % and 50 %,
            # GQA trained 2x past the budget for the acceleration read-out, decode tokens/s of MHA/GQA/DHA at batch 8.
            gpu=dict(
                device="cuda",
                analysis_lm=False,
                lm_budgets=[0.5, 0.25],
                arm_seeds=[0, 1],
                d_model=512,
                n_layers=6,
                n_heads=8,
                seq=256,
                batch=32,
                pretrain_steps=1500,
                pretrain_lr=1e-3,
                budgets=[0.25, 0.5],
                total_steps=200,
                fusion_steps=120,
                split_fusion_steps=[40, 120, 160],
                lite_arm=True,
                eval_every=20,
                gqa_extra_steps=400,
                eval_batches=16,
                eval_batch=32,
                calib_rows=16,
                interp_alphas=[0.0, 0.25, 0.5, 0.75, 1.0],
                decode_batch=8,
                decode_prompt=64,
                decode_new=192,
            ),
            # paper: the analysis model becomes the paper's Sheared-LLaMA-1.3B (MHA, 16 heads, trained with <bos>)
            # at the paper's 50 % / 25 % budgets; the paper's training runs (RedPajama, 0.2B-5B tokens, 8 GPUs)
            # are not attempted.
            paper_=dict(
                analysis_lm=True,
                lm_model="princeton-nlp/Sheared-LLaMA-1.3B",
                lm_bos=True,
                lm_budgets=[0.5, 0.25],
                lm_seq=256,
                lm_calib_rows=32,
                lm_eval_rows=64,
            ),
        ),
        _nb(
            "05_moh",
            "moh",
            "MoH: multi-head attention as mixture-of-head attention (Jin et al. 2025)",
            smoke=dict(
                seed=0,
                device="cpu",
                beta=0.01,
                # intra-op threads pinned (0: leave as set): the ViT's float sums, hence the checked claims,
                # change with the thread count
                threads=1,
                # tiny ViT on sklearn digits (8 heads x 8, depth 4, d 64, 16 patch tokens)
                vit_seeds=[0],
                vit_epochs=12,
                vit_batch=128,
                vit_lr=3e-3,
                vit_table1=["MHA", "MoH-88", "MoH-75", "MoH-50"],
                vit_table5=["MoH-75 no shared, no two-stage", "MoH-75 no two-stage", "MoH-75"],
                vit_table6=["MoH-75 h_s=1", "MoH-75", "MoH-75 h_s=4"],
                vit_extra=[],  # runs are shared between tables
                # byte-level LM on the shipped corpus, 7 text types as domains
                lm_variants=["MHA", "MoH-75", "MoH-50"],
                lm_seeds=[0],
                lm_steps=80,
                lm_batch=12,
                lm_seq=128,
                lm_d=128,
                lm_layers=2,
                lm_heads=8,
                lm_d_head=16,
                lm_d_mlp=256,
                lm_lr=3e-3,
                lm_val_windows=8,
                # SmolLM2-135M converted with the query-norm router (h_s, K) per budget; False skips it
                smollm=True,
                smollm_budgets={"7/9": (4, 3), "5/9": (3, 2)},
                smollm_seq=128,
                smollm_eval_windows=4,
                smollm_random_seeds=[0, 1, 2],
                smollm_tune_steps=2,
                smollm_tune_batch=1,
                smollm_tune_lr=2e-5,
                # one attention layer, MHA vs MoH masked vs MoH skipping (h_s, K) of 8 heads
                speed_seqs=[256, 512, 1024],
                speed_budgets={"MoH-88": (2, 5), "MoH-75": (2, 4), "MoH-50": (2, 2)},
                speed_heads=8,
                speed_d_head=64,
                speed_batch=1,
                speed_repeats=11,
                speed_dtype="float32",
                n_perm=200,
                use_hub=False,
                hub_model="",
            ),
            # gpu: several seeds, longer training, a bigger LM, the speed sweep at 1k-8k tokens in bf16. The GPU machine
            # has no offline SmolLM2 weights, so the conversion (Table 4, Fig. 2) is off there (smollm=False)
            gpu=dict(
                device="cuda",
                threads=0,
                vit_seeds=[0, 1, 2],
                vit_epochs=15,
                vit_extra=["MoH-75 beta=0", "MoH-62"],
                vit_table5=["MoH-75 no shared, no two-stage", "MoH-75 no two-stage", "MoH-75", "MoH-75 random router"],
                vit_table6=["MoH-75 h_s=1", "MoH-75", "MoH-75 h_s=3", "MoH-75 h_s=4"],
                lm_seeds=[0, 1],
                lm_steps=600,
                lm_batch=16,
                lm_seq=512,
                lm_d=512,
                lm_layers=6,
                lm_heads=8,
                lm_d_head=64,
                lm_d_mlp=1365,
                lm_lr=1e-3,
                lm_val_windows=16,
                smollm=False,
                smollm_eval_windows=32,
                smollm_tune_steps=20,
                smollm_tune_batch=4,
                speed_seqs=[1024, 2048, 4096, 8192],
                speed_heads=16,
                speed_batch=2,
                speed_budgets={"MoH-88": (4, 10), "MoH-75": (4, 8), "MoH-50": (4, 4)},
                speed_repeats=20,
                speed_dtype="bfloat16",
            ),
            # paper: adds the released MoH-LLaMA3-8B (parameter-free router, 16 shared + top-8 of 16 routed heads)
            paper_=dict(use_hub=True, hub_model="Chat-UniVi/MoH-LLaMA3-8B"),
            rehearse=dict(
                vit_seeds=[0, 1],
                vit_epochs=1,
                lm_steps=5,
                lm_batch=2,
                lm_seq=64,
                lm_d=64,
                lm_layers=2,
                lm_d_head=8,
                lm_d_mlp=128,
                lm_val_windows=2,
                speed_seqs=[256, 2048],
                speed_d_head=16,
                speed_batch=1,
                speed_repeats=1,
                n_perm=20,
            ),
        ),
        _nb(
            "01_dormant_heads",
            "dormant_heads",
            "Dormant / inactive attention heads (Sandoval-Segura et al. 2025)",
            smoke=dict(
                seed=0,
                device="cpu",
                models=["smollm2-135m", "gemma3-270m"],
                batch_size=32,
                # generated 4-way multiple choice (6 kinds x mc_per_kind), MMLU subset, corpus paragraphs
                # (CPU budget: every sweep point is one forward per (item, choice) or text; ~300 CPU-s in all)
                mc_per_kind=5,
                mmlu_subjects=8,
                mmlu_per_subject=1,
                mmlu_max_chars=160,
                text_per_type=3,
                text_max_tokens=24,
                quantiles=[0.0, 0.1, 0.2, 0.3],
                # score functions swept per model (aligned with models) on the generated set; the
                # next-token-loss sweep runs on the first nll_models models; MMLU is calibration-only
                mc_scores=[["random", "ahon", "ahon_ln", "awft", "lthon_ln"], ["random", "ahon_ln", "awft"]],
                nll_scores=["random", "ahon_ln", "awft"],
                nll_models=1,
                mmlu_scores=[],
                tol=1.0,
                n_boot=200,
                top_k=2,
                threshold_p=0.15,
                awft_p=0.05,
                overlap_p=0.2,
                # from-scratch Bigram-Backcopy model (2 attention-only layers x 4 heads, learned positions)
                bb_vocab=64,
                bb_triggers=4,
                dyn_layers=2,
                dyn_heads=4,
                dyn_d_model=64,
                dyn_steps=1000,
                dyn_every=50,
                dyn_lr=1e-2,
                dyn_min_lr_ratio=1.0,
                dyn_batch=32,
                dyn_seq=48,
                dyn_eval=32,
                tau_ahon_ln=0.5,
                tau_awft=0.5,
                ft_steps=150,
                ft_lr=3e-3,
                trigger_boost=3.0,
                dyn_second_seed=True,
                bench_batch=8,
                bench_seq=32,
                bench_repeats=2,
            ),
            # gpu (untested: it needs the offline SmolLM2 / Gemma weights in .cache on the GPU machine, which this
            # project's machine does not have): every paper score function on both models, the paper's 7 quantiles,
            # far more items, MMLU curves, the next-token-loss sweep on both models, longer from-scratch training
            gpu=dict(
                device="cuda",
                batch_size=64,
                mc_per_kind=60,
                mmlu_subjects=None,
                mmlu_per_subject=10,
                mmlu_max_chars=None,
                text_per_type=24,
                text_max_tokens=128,
                quantiles=[0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                mc_scores=[
                    [
                        "random",
                        "awft",
                        "awft_ln",
                        "entropy",
                        "entropy_ln",
                        "ftvvn",
                        "ftvvn_ln",
                        "avvn",
                        "avvn_ln",
                        "lthon",
                        "lthon_ln",
                        "lthon_hn",
                        "ahon",
                        "ahon_ln",
                        "ahon_wo",
                        "ahon_wo_ln",
                    ]
                ]
                * 2,
                nll_scores=["random", "awft", "awft_ln", "entropy_ln", "avvn_ln", "lthon_ln", "ahon", "ahon_ln"],
                nll_models=2,
                mmlu_scores=["random", "awft", "ahon", "ahon_ln", "lthon_ln"],
                n_boot=1000,
                top_k=5,
                dyn_layers=4,
                dyn_d_model=128,
                dyn_steps=6000,
                dyn_every=100,
                dyn_batch=64,
                dyn_seq=96,
                dyn_eval=128,
                ft_steps=600,
                bench_batch=16,
                bench_seq=256,
                bench_repeats=10,
            ),
            # paper: three of the paper's hub models (Fig. 4's), zero-shot cloze MMLU (not lm-eval 5-shot)
            paper_=dict(
                models=["meta-llama/Llama-3.1-8B-Instruct", "allenai/OLMo-2-1124-7B-Instruct", "Qwen/Qwen2.5-3B"],
                mc_scores=[
                    ["random", "awft", "awft_ln", "entropy_ln", "ftvvn_ln", "avvn_ln", "lthon_ln", "ahon", "ahon_ln"]
                ]
                * 3,
                nll_models=3,
                mc_per_kind=30,
                batch_size=16,
            ),
            # rehearse: every gpu score function on both models, but 3 thresholds and a handful of items (~5 CPU-min)
            rehearse=dict(
                batch_size=32,
                mc_per_kind=1,
                mmlu_subjects=3,
                mmlu_per_subject=1,
                text_per_type=1,
                quantiles=[0.0, 0.1, 0.3],
                text_max_tokens=24,
                n_boot=20,
                dyn_steps=100,
                dyn_every=50,
                dyn_batch=16,
                dyn_seq=48,
                dyn_eval=16,
                ft_steps=20,
                bench_batch=2,
                bench_seq=32,
                bench_repeats=1,
            ),
        ),
    ]
}


def _gpu_available() -> bool:
    import os

    import torch

    # Ask NVML, not the CUDA driver: a driver-initialised parent cannot fork CPU workers that use torch
    # (Count01's worker pool failed with "CUDA error: initialization error" on the H100 without this).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return torch.cuda.is_available()


class Params(dict):
    """A dict with attribute access (``P.seed``) that prints as a readable table."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def __repr__(self):
        w = max(len(k) for k in self)
        return "\n".join(f"{k:<{w}}  {v!r}" for k, v in self.items())


def resolve(notebook: str, profile: str, **overrides) -> Params:
    """Full parameter set of ``notebook`` under ``profile``, with ``overrides`` applied.

    Raises a one-line ``ProfileError`` for an unknown notebook, profile or parameter, for
    ``gpu`` without a visible GPU, and for ``paper`` when the hub cannot be reached.
    """
    if notebook not in NOTEBOOKS:
        raise ProfileError(f"unknown notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    nb = NOTEBOOKS[notebook]
    base = nb.params[profile]
    unknown = set(overrides) - set(base)
    if unknown:
        raise ProfileError(f"{notebook}: unknown parameter(s) {sorted(unknown)}; known: {sorted(base)}")
    rehearsal = profile == "gpu" and os.environ.get(REHEARSE_ENV) == "1"
    if rehearsal and nb.rehearse is None:
        raise ProfileError(f"{notebook}: no rehearsal sizes defined (its gpu profile already ran on a GPU)")
    if profile == "gpu" and not rehearsal and not _gpu_available():
        raise ProfileError("profile 'gpu' needs a CUDA GPU and none is visible; use profile='smoke' on a CPU machine")
    if profile == "paper" and nb.paper_needs_hub:
        from .models import hub_reachable

        if not hub_reachable():
            raise ProfileError(
                "profile 'paper' loads the papers' own models from the Hugging Face hub, which this "
                "machine cannot reach; use profile='smoke' (CPU) or 'gpu' (offline GPU)"
            )
    if rehearsal:  # the gpu lists at the rehearsal's toy sizes, on the CPU; knobs still win
        base = {**base, **nb.rehearse, "device": "cpu"}
        print(f"REHEARSAL of {notebook}'s gpu profile on the CPU at toy sizes: a code-path check, numbers mean nothing")
    return Params(profile=profile, notebook=notebook, paper=nb.paper, **{**base, **overrides})
