"""Plots for the notebooks: each function returns a matplotlib Figure (one module per topic)."""
