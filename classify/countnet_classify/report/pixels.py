"""Circles or pixels? The report's answer to the blog's worry that a CNN "counts the blue
pixels": each run on a countnet set with distractors beside a run on the same set without
them (`countnet gen --distractors ... --match-area`), same model, budget and recipe.

With matched areas an image's foreground area has the same distribution for every count, so
an error well below chance there cannot come from counting foreground pixels.
"""

from __future__ import annotations

import dataclasses

from countnet_classify.report.views import RunView, chance_error
from countnet_classify.spec import RunSpec

DISTRACTOR_KEYS = ("distractors", "distractor_shape", "distractor_radius", "match_area")
# What makes two runs the same experiment but for the data: the model, its size, and the
# training budget and recipe (resolved batch size too). Augmentation and precision may
# differ (a transform selection may choose differently per set): the table says so.
BUDGET_KEYS = (
    "arch", "pretrained", "weights", "size", "valid_pct", "epochs", "freeze_epochs", "lr",
    "lr_policy", "lr_gamma", "lr_power", "lr_step", "lr_find_iters", "opt", "momentum", "wd",
    "head", "head_dropout", "precise_bn", "task", "loss",
)  # fmt: skip
NOTED = ("transforms", "precision")  # resolved values, shown where the two runs differ
COLUMNS = (
    "plain run",
    "plain error_rate",
    "distractor run",
    "distractors",
    "areas matched",
    "distractor error_rate",
    "chance",
    "counts",
    "differences",
)
INTRO = (
    "Each run on a set with distractors (other shapes, not counted) beside "
    "a run on the same set without them, with the same model, budget and training recipe "
    "(augmentation or precision, where they differ, are listed). Where the areas are "
    "matched, an image's foreground area has the same distribution for every count: an "
    "error well below chance there cannot come from counting foreground pixels."
)


def _plain_params(v: RunView) -> tuple | None:
    """The generator parameters of the run's set without its distractors (None: not a
    countnet set)."""
    params = v.config.get("dataset_params")
    if not params:
        return None
    kept = {k: val for k, val in params.items() if k not in DISTRACTOR_KEYS and k != "name"}
    return tuple(sorted((k, str(val)) for k, val in kept.items()))


def _budget(v: RunView) -> tuple:
    run, res = v.config["run"], v.config["resolved"]
    resolved = (res.get(k) for k in ("batch_size", "pretrained", "weights_sha256"))
    # An option a run predates (task, loss) had its default then.
    defaults = {f.name: f.default for f in dataclasses.fields(RunSpec)}
    return (*(run.get(k, defaults.get(k)) for k in BUDGET_KEYS), *resolved)


def pairs(views: list[RunView]) -> list[tuple[RunView, RunView]]:
    """(plain run, distractor run): every run on a set with distractors and each run on the
    same set without them that has the same model, budget and recipe (options and the
    resolved batch size, pretraining and weights)."""
    plain = [v for v in views if _plain_params(v) and not _has_distractors(v)]
    out = []
    for d in views:
        if not _has_distractors(d):
            continue
        out += [
            (p, d)
            for p in plain
            if _plain_params(p) == _plain_params(d) and _budget(p) == _budget(d)
        ]
    return out


def _has_distractors(v: RunView) -> bool:
    return bool((v.config.get("dataset_params") or {}).get("distractors"))


def reading(plain_error: float, error: float, chance: float, n_valid: int, matched: bool) -> str:
    """Plain words for a distractor run's error against chance and against its plain run,
    with two binomial standard errors as the noise."""
    n = max(n_valid, 1)
    if error >= chance - 2 * (chance * (1 - chance) / n) ** 0.5:
        return "cannot tell: at chance with distractors" + (
            ", where foreground area says nothing about the count" if matched else ""
        )
    if not matched:
        return "circles among other shapes; areas not matched, so pixels could still count"
    se = (max(error * (1 - error), 1 / n) / n) ** 0.5
    if error <= plain_error + 2 * se:
        return "circles, not pixels: as accurate when foreground area says nothing"
    return (
        "circles, not pixels (far below chance when area says nothing); the gap to the plain "
        "set is what telling circles from other shapes costs at this budget"
    )


def rows(views: list[RunView]) -> list[list[str]]:
    out = []
    for p, d in pairs(views):
        params, s_p, s_d = d.config["dataset_params"], p.config["summary"], d.config["summary"]
        matched = bool(params.get("match_area"))
        chance = chance_error(d.config)
        shapes = params.get("distractor_shape") or []
        out.append(
            [
                p.name,
                f"{s_p['final_error_rate']:.4f}",
                d.name,
                f"{params['distractors']} an image ({', '.join(shapes)})",
                "yes" if matched else "no",
                f"{s_d['final_error_rate']:.4f}",
                f"{chance:.4f}",
                reading(
                    s_p["final_error_rate"],
                    s_d["final_error_rate"],
                    chance,
                    d.config["data"]["n_valid"],
                    matched,
                ),
                _differences(p, d),
            ]
        )
    return out


def _differences(plain: RunView, other: RunView) -> str:
    """What the two runs did differently besides the data: "none", or e.g.
    "transforms: dihedral vs none" (an LR rule such as --lr auto picks a rate per set)."""
    a, b = plain.config["resolved"], other.config["resolved"]
    diffs = [f"{k}: {a.get(k)} vs {b.get(k)}" for k in NOTED if a.get(k) != b.get(k)]
    lr_a, lr_b = ((v.config.get("lr") or {}).get("used") for v in (plain, other))
    if lr_a != lr_b:
        diffs.append(f"lr used: {lr_a:.3g} vs {lr_b:.3g}" if lr_a and lr_b else "lr used")
    return "; ".join(diffs) or "none"
