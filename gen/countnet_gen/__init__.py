"""countnet's first stage: synthetic counting datasets (images of N circles).

The pipeline is split so each piece is testable on its own:
``spec`` (what to generate), ``sampler`` (where circles go), ``render`` (pixels),
``writer`` (files, manifest, atomic rename).
"""

from countnet_gen.errors import CountnetError
from countnet_gen.spec import DatasetSpec

__all__ = ["CountnetError", "DatasetSpec"]
