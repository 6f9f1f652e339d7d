"""What every figure of reidlib shares: its resolution (so a PNG's pixel size is known), and quiet font
lookup: matplotlib logs a ``findfont`` warning for every family a host lacks before it falls back to
one it has, which would print red lines under the figures of a notebook and change nothing in them."""

import logging

FIGURE_DPI = 100

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
