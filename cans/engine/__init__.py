"""Engines: training, evaluation and the paper reference numbers."""
