"""Notebook 00, a tour of headlab: one function per section (``tour.sections``, calling only the core) and
its figures (``tour.figures``)."""

from .sections import batch_ids, first_token_attention_table, head_norm_table, published_numbers, train_tiny

__all__ = ["batch_ids", "first_token_attention_table", "head_norm_table", "published_numbers", "train_tiny"]
