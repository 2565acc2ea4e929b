"""Notebook 00, a tour of headlab: its figures (``tour.figures``); the computation is the core's."""
