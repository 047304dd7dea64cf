"""Trainer callbacks added by `MultiTaskTrainer`: the strategies' schedule and non-finite steps (`strategies`), the
sharing scheme's hooks (`sharing`) and task-affinity measurement (`affinity`)."""
