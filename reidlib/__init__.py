"""reidlib: person re-identification with erasing networks (SEN, Deep Miner, Batch DropBlock, BoT).

The package is deliberately thin: datasets, erasing masks, networks, losses, metrics and one training
engine. Notebooks in ``notebooks/`` import it (installed editable) and only narrate and plot.
"""

__version__ = "0.1.0"
