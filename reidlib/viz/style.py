"""What every figure of reidlib shares: its resolution (so a PNG's pixel size is known)."""

FIGURE_DPI = 100
