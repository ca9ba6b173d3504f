"""countnet: what can a CNN learn, and what does it take?

Two halves and what they share: ``countnet_gen`` (gen/) renders synthetic counting datasets,
``countnet_classify`` (classify/) trains and evaluates classifiers on any folder-labeled
set. This package holds what both use — ``errors`` (the one-line user error), ``atomic``
(temp-then-rename writes, locks), ``versions``, ``progress``, ``cpus`` — and ``cli``, the
`countnet` command over both halves.
"""
