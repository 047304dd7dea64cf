"""Export one task's forward for serving: `torch.export` and ONNX.

`MultiTaskModel.forward` routes rows to heads by task at run time (`task_ids`), which a traced graph cannot hold as
data-dependent control flow. An exported graph therefore serves ONE task, fixed when it is exported: `TaskForward`
wraps the model as `(input_ids, attention_mask[, token_type_ids]) -> logits` of that task (task embedding, sharing
scheme and head included), with batch size and sequence length left dynamic. Export one graph per task to serve
several.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .modeling_multitask import MultiTaskModel
from .utils.encoder_settings import max_positions


class TaskForward(nn.Module):
    """`model(..., task=task).logits` as a module whose inputs are tensors only (what `torch.export` traces)."""

    def __init__(self, model: MultiTaskModel, task: str):
        super().__init__()
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"TaskForward wraps a hf_mtl MultiTaskModel, got {type(model).__name__}.")
        spec = model.config.task_spec(task)  # an unknown task names the model's tasks
        if spec.type == "multiple_choice":
            raise ValueError(f"Task {task!r} is multiple choice ([batch, num_choices, seq_len] inputs): export is for "
                             "tasks with [batch, seq_len] inputs.")
        self.model = model.eval()
        self.task = task

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, task=self.task).logits


def _example(model: MultiTaskModel, example_inputs: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    if example_inputs is None:  # two rows of 8 tokens: batch and length must not be 1 (export would specialise them)
        ids = torch.full((2, 8), 5, dtype=torch.long)
        example_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    missing = {"input_ids", "attention_mask"} - set(example_inputs)
    if missing:
        raise ValueError(f"example_inputs needs {sorted(missing)} (e.g. tokenizer(texts, padding=True, return_tensors='pt')).")
    device = next(model.parameters()).device
    return {key: example_inputs[key].to(device) for key in ("input_ids", "attention_mask", "token_type_ids") if key in example_inputs}


def _dynamic_shapes(model: MultiTaskModel, inputs: dict[str, torch.Tensor]) -> dict[str, dict[int, torch.export.Dim]]:
    """Batch size and sequence length free, up to the encoder's position embeddings."""
    positions = max_positions(model.config.encoder) or 4096
    batch, length = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=positions)
    return {key: {0: batch, 1: length} for key in inputs}


def export_task(model: MultiTaskModel, task: str, example_inputs: dict[str, torch.Tensor] | None = None) -> torch.export.ExportedProgram:
    """`torch.export.export` of one task's forward, batch size and sequence length dynamic. Run it with
    `program.module()(input_ids=..., attention_mask=...)`; save it with `torch.export.save(program, "task.pt2")`."""
    inputs = _example(model, example_inputs)
    with torch.no_grad():
        return torch.export.export(TaskForward(model, task), args=(), kwargs=inputs, dynamic_shapes=_dynamic_shapes(model, inputs))


def export_task_onnx(model: MultiTaskModel, task: str, path: str | Path,
                     example_inputs: dict[str, torch.Tensor] | None = None) -> Path:
    """One task's forward as an ONNX file (torch's dynamo exporter; needs the `onnx` and `onnxscript` packages:
    `pip install hf_mtl[export]`). Inputs are named `input_ids`, `attention_mask` (and `token_type_ids` when the
    example has them), the output `logits`; batch size and sequence length are dynamic."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; fail here with the install line)
    except ImportError:
        raise ImportError("ONNX export needs `onnx` and `onnxscript`: pip install 'hf_mtl[export]'.") from None
    inputs = _example(model, example_inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            TaskForward(model, task), args=(), kwargs=inputs, dynamo=True, dynamic_shapes=_dynamic_shapes(model, inputs),
            input_names=list(inputs), output_names=["logits"],
        )
    program.save(str(path))
    return path
