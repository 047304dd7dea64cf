"""Training: `MultiTaskTrainingArguments`, `MultiTaskTrainer` (a thin Trainer that delegates to the weighting, the
sampler and its callbacks), per-task gradients, checkpoints, non-finite steps and the head-refinement stage."""
