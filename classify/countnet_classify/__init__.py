"""countnet's second stage: train and evaluate image classifiers with fastai.

``config`` (RunSpec), ``screen`` (vet images), ``data`` (DataLoaders), ``transforms``
(augmentation presets and their label safety), ``model`` (archs and weights),
``schedules`` (Caffe LR policies), ``callbacks`` (tables, checkpoints), ``train``,
``predict``, ``select`` (transform selection), ``report``. The `countnet` command is
``countnet.cli``, over both halves.
"""

import warnings

# torch/fastai import-time deprecation chatter is not the user's business.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
