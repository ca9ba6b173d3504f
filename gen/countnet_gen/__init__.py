"""countnet's first stage: synthetic counting datasets (images of N circles).

The pipeline is split so each piece is testable on its own:
``spec`` (what to generate), ``sampler`` (where circles go), ``render`` (pixels),
``writer`` (files, manifest, atomic rename).
"""

from countnet.errors import CountnetError
from countnet_gen.spec import DatasetSpec

# Bumped whenever the same DatasetSpec and seed would render different pixels or circles
# (2: --no-overlap gap 1 -> 2 px; 3: radii redrawn when a layout fails, the image seed mixes
# in the parameters; 4: radii kept for the first 20 layouts). Recorded in dataset.json and
# a parameter of the workflow's gen rule, so a generator fix regenerates the sets made before.
PIXELS_VERSION = 4

__all__ = ["PIXELS_VERSION", "CountnetError", "DatasetSpec"]
