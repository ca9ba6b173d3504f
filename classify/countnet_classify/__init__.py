"""countnet's second stage: train and evaluate image classifiers with fastai.

``config`` (RunSpec), ``screen`` (vet images), ``cache`` (decoded pixels), ``data``
(DataLoaders), ``transforms`` (augmentation presets and their label safety), ``model``
(archs and weights), ``precision`` (autocast, memory layout), ``phases`` (the schedule,
resume), ``schedules`` (Caffe LR policies), ``callbacks`` (tables, checkpoints,
PreciseBN), ``train``,
``predict``, ``select`` (transform selection), ``report``. The `countnet` command is
``countnet.cli``, over both halves.
"""

import warnings

# torch/fastai import-time deprecation chatter is not the user's business.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
