"""Shared test fixtures."""

import pytest
import torch
import transformers as tf


@pytest.fixture
def tiny_llama():
    """A random 2-layer HF Llama (vocab 97, 4 query heads of 16 over 2 KV heads), seeded, in eval mode."""
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return tf.LlamaForCausalLM(cfg).eval()
