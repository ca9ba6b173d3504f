"""Training-loop extensions as fastai callbacks: the per-epoch table and batch losses
(``metrics``), checkpoints for --resume (``checkpoint``), BatchNorm statistics re-estimated
before validation (``precise_bn``), and precision and memory layout (``precision``)."""
