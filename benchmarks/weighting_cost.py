"""Target 2: step time of each weighting strategy against static weighting, K tasks in mixed batches.

Loss-level strategies (`uncertainty`, `dwa`, `famo`, `rep_norm`, `gradnorm_rep`) back-propagate once through the
encoder, like static weighting: goal <= 1.05 (`rep_norm` adds one small backward pass through each head, not through
the encoder); `gradnorm_rep` (GradNorm with the norms at the representation, the same head passes): goal <= 1.3;
FAMO's default update (the paper's, on the same batch) runs the step's batches once more without gradients: goal
<= 1.5; `famo_next_step` (`update="next_step"`) adds nothing: goal <= 1.05.
Gradient-level ones (`gradnorm`, `pcgrad`, `cagrad`) need one backward pass per task present (counted here by a
gradient hook on the input embeddings, not assumed): goal <= (K + 0.5) x static. Every strategy runs on the same
K-task model and the same mixed batches (the gradient methods need every task in every step).
"""

from __future__ import annotations

from .arms import run_training
from .common import interleaved, log, median, target, time_ratios


LOSS_LEVEL = ["uncertainty", "dwa", "famo", "famo_next_step", "rep_norm", "gradnorm_rep"]
# FAMO's default (the paper's) update runs the step's batches once more without gradients: one extra forward pass.
# GradNorm at the representation: the target for a one-backward gradient strategy.
LIMITS = {"famo": 1.5, "gradnorm_rep": 1.3}
GRADIENT_LEVEL = ["gradnorm", "pcgrad", "cagrad"]


def run(context) -> dict:
    settings = context.settings
    k = len(context.specs)
    arms = ["mtl_static"] + [f"mtl_{name}" for name in LOSS_LEVEL + GRADIENT_LEVEL]
    runs = {arm: [] for arm in arms}
    repeats = settings.weighting_repeats
    for repeat in range(repeats):
        for arm in interleaved(arms, repeat):
            if arm[len("mtl_"):] in GRADIENT_LEVEL:  # K backward passes a step: fewer (and one warm-up) steps
                record = run_training(context, arm, settings.gradient_steps, warmup=min(settings.warmup_steps, 1))
            else:
                record = run_training(context, arm, settings.steps)
            runs[arm].append(record)
            log(f"weighting cost, repeat {repeat + 1}/{repeats}, {arm}: {record['step_time']:.3f} s/step, "
                f"{record['backward_passes']} backward pass(es)")

    static = [record["step_time"] for record in runs["mtl_static"]]
    targets, details = [], {}
    for name in LOSS_LEVEL + GRADIENT_LEVEL:
        ratio, cpu = time_ratios(runs[f"mtl_{name}"], runs["mtl_static"])
        passes = median(record["backward_passes"] for record in runs[f"mtl_{name}"])
        gradient = name in GRADIENT_LEVEL
        limit = k + 0.5 if gradient else LIMITS.get(name, 1.05)
        targets.append(target(
            "2", f"Weighting {name} / static (K={k})", ratio["ratio"], "<=", limit,
            detail=f"{passes:g} backward pass(es)/step; per-repeat {ratio['ratio_min']}-{ratio['ratio_max']}; "
                   f"CPU time {cpu['ratio']}",
            spread=(ratio["ratio_min"], ratio["ratio_max"]), cpu_value=cpu["ratio"],
        ))
        details[name] = {**ratio, "ratio_cpu": cpu["ratio"], "backward_passes": passes, "limit": limit,
                         "median_step_time": median(record["step_time"] for record in runs[f"mtl_{name}"])}
    details["static"] = {"median_step_time": median(static),
                         "backward_passes": median(record["backward_passes"] for record in runs["mtl_static"])}
    return {"targets": targets, "details": {"num_tasks": k, "strategies": details}}
