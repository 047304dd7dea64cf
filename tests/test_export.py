"""One task's forward exported with torch.export and ONNX gives the model's own logits, at other batch sizes and
lengths than the example it was traced with."""

from __future__ import annotations

import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.export import TaskForward, export_task, export_task_onnx

from .conftest import tiny_bert_config


TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
    {"name": "stsb", "type": "regression"},
    {"name": "swag", "type": "multiple_choice"},
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(vocab_size=120), tasks=TASKS, task_embedding="cls")).eval()
    with torch.no_grad():
        model.task_embedding.weight.normal_()  # the task conditioning must be in the graph too
    return model


def batch(rows, length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, length - 2:] = 0  # padding in the first row
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task", ["sst2", "ner", "stsb"])
def test_torch_export_gives_the_models_logits_at_other_shapes(model, task):
    program = export_task(model, task, batch(2, 8))
    exported = program.module()
    for rows, length in [(2, 8), (5, 13), (1, 3)]:
        inputs = batch(rows, length, seed=rows)
        with torch.no_grad():
            expected = model(**inputs, task=task).logits
        torch.testing.assert_close(exported(**inputs), expected, rtol=1e-4, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime_with_the_same_logits(model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_task_onnx(model, "ner", tmp_path / "ner.onnx", batch(2, 8))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    inputs = batch(3, 11, seed=3)
    (logits,) = session.run(["logits"], {key: value.numpy() for key, value in inputs.items()})
    with torch.no_grad():
        expected = model(**inputs, task="ner").logits
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)


def test_export_refuses_what_it_cannot_serve(model):
    with pytest.raises(ValueError, match="multiple choice"):
        TaskForward(model, "swag")
    with pytest.raises(Exception, match="Unknown task 'nli'"):
        TaskForward(model, "nli")
    with pytest.raises(ValueError, match=r"example_inputs needs \['attention_mask'\]"):
        export_task(model, "sst2", {"input_ids": torch.ones(2, 4, dtype=torch.long)})
