"""Task affinity (TAG lookahead): the measurement, the trainer callback, the grouping and the CLI command."""

import json

import numpy as np
import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainingArguments
from hf_mtl.cli import main
from hf_mtl.data.demo_data import demo_datasets
from hf_mtl.evaluation.affinity import _partitions, lookahead_affinity, partition_score, suggest_groups

from .conftest import tiny_bert_config
from .test_trainer import TASKS, make_model, make_trainer


RATING = {"type": "regression", "labels": ["score"]}


# ------------------------------------------------------------------ grouping


def test_partitions_are_all_set_partitions():
    partitions = list(_partitions(list(range(5))))
    assert len(partitions) == 52  # Bell number B5
    assert len({tuple(sorted(tuple(sorted(g)) for g in p)) for p in partitions}) == 52


def test_suggest_groups_keeps_helpful_pairs_together_and_conflicting_ones_apart():
    z = np.full((4, 4), -0.2)
    z[0, 1], z[1, 0] = 0.4, 0.3  # a and b help each other
    z[2, 3], z[3, 2] = 0.1, 0.2  # c and d too
    names = ["a", "b", "c", "d"]
    assert suggest_groups(z, task_names=names) == [["a", "b"], ["c", "d"]]
    assert suggest_groups(z, num_groups=3, task_names=names) == [["a", "b"], ["c"], ["d"]]
    assert suggest_groups(z, num_groups=1) == [[0, 1, 2, 3]]
    assert partition_score(z, [[0, 1], [2, 3]]) == pytest.approx(0.4 + 0.3 + 0.1 + 0.2)


def test_many_tasks_use_greedy_merging():
    rng = np.random.default_rng(0)
    z = rng.normal(-0.5, 0.05, (12, 12))
    for block in (range(0, 4), range(4, 8), range(8, 12)):
        for i in block:
            for j in block:
                z[i, j] = 0.5
    assert suggest_groups(z) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert len(suggest_groups(z, num_groups=2)) == 2


@pytest.mark.parametrize(
    "matrix, kwargs, message",
    [
        (np.zeros((2, 3)), {}, "square"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), {}, "NaN"),
        (np.zeros((3, 3)), {"num_groups": 4}, "between 1 and the number of tasks"),
        (np.zeros((3, 3)), {"task_names": ["a"]}, "1 task names for a 3x3"),
    ],
)
def test_suggest_groups_bad_input(matrix, kwargs, message):
    with pytest.raises(ValueError, match=message):
        suggest_groups(matrix, **kwargs)


# ------------------------------------------------------------------ the measurement


def conflict_model_and_batches():
    """Three regression tasks on the same rows with identical heads: `same` has the anchor's targets, `flip` their
    negation. A step on `anchor` must help `same` and hurt `flip`."""
    tasks = [{"name": name, **RATING} for name in ("anchor", "same", "flip")]
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=tasks))
    for name in ("same", "flip"):
        model.heads[name].load_state_dict(model.heads["anchor"].state_dict())
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 99, (16, 8), generator=g)
    targets = torch.randn(16, generator=g) * 2
    batches = {
        name: {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": sign * targets, "task": name}
        for name, sign in (("anchor", 1.0), ("same", 1.0), ("flip", -1.0))
    }
    return model, batches


def test_conflicting_pair_ranks_below_helpful_pair_and_parameters_are_restored():
    model, batches = conflict_model_and_batches()
    model.train()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    z = lookahead_affinity(model, batches, ["anchor", "same", "flip"], lr=0.05)
    anchor, same, flip = 0, 1, 2
    assert z[anchor, same] > 0 > z[anchor, flip]
    assert z[same, anchor] > z[flip, anchor]
    assert z[anchor, anchor] == pytest.approx(z[anchor, same])  # identical task: identical effect
    assert model.training  # mode restored
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name  # parameters restored bit for bit
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------ through the trainer


@pytest.fixture(scope="module")
def conflict_data():
    rating = demo_datasets(num_train=32, num_eval=8, seed=3, tasks=["rating"])["rating"]
    flipped = rating.map(lambda row: {"label": -row["label"]})
    return {"anchor": rating, "same": rating, "flip": flipped}


def conflict_trainer(tmp_path, tokenizer, data, **overrides):  # noqa: F811
    tasks = [{"name": name, **RATING} for name in data]
    model = make_model(tasks=["rating"], dropout=0.0)
    # Identical heads and no task embedding: the three tasks differ only in their labels, so the shared encoder
    # alone carries the conflict that affinity must find.
    model = MultiTaskModel(MultiTaskConfig(encoder=model.config.encoder, tasks=tasks, task_embedding="none"))
    for name in ("same", "flip"):
        model.heads[name].load_state_dict(model.heads["anchor"].state_dict())
    # One learning rate for heads and encoder: fast heads (the default x10) would absorb the conflict in 3 steps.
    values = dict(eval_data=False, learning_rate=1e-3, max_steps=3, sampling="uniform", head_lr_multiplier=1.0)
    values.update(overrides)
    return make_trainer(tmp_path, tokenizer, data, model=model, **values)


def test_trainer_writes_affinity_that_ranks_the_conflict_below_the_helper_without_changing_training(
    tmp_path, tokenizer, conflict_data  # noqa: F811
):
    measured = conflict_trainer(tmp_path / "measured", tokenizer, conflict_data, task_affinity_steps=1, task_affinity_lr=0.05)
    measured.train()
    out = tmp_path / "measured" / "out"
    result = json.loads((out / "task_affinity.json").read_text())
    assert (out / "task_affinity.png").stat().st_size > 1000
    assert result["tasks"] == ["anchor", "same", "flip"] and result["num_measurements"] == 3 and result["steps"] == [1, 2, 3]
    z = np.asarray(result["affinity"])
    np.testing.assert_allclose(z, np.mean(result["history"], axis=0))
    assert z[0, 1] > z[0, 2] and z[1, 0] > z[2, 0] and z[0, 2] < 0
    assert ["anchor", "same"] in result["suggested_groups"] and ["flip"] in result["suggested_groups"]
    # The lookaheads restore the parameters and draw their own batches: training is exactly the unmeasured run.
    plain = conflict_trainer(tmp_path / "plain", tokenizer, conflict_data)
    plain.train()
    for (name, a), b in zip(plain.model.state_dict().items(), measured.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_resumed_run_keeps_the_measurements_made_before_its_checkpoint(tmp_path):
    from types import SimpleNamespace

    from hf_mtl.training.callbacks.affinity import TaskAffinityCallback

    model, _ = conflict_model_and_batches()
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), task_affinity_steps=1, report_to="none")
    callback = TaskAffinityCallback(SimpleNamespace(args=args, model=model))
    saved = {"tasks": ["anchor", "same", "flip"], "affinity": [[0.0] * 3] * 3, "steps": [1, 2, 3],
             "history": [np.full((3, 3), float(step)).tolist() for step in (1, 2, 3)]}
    (tmp_path / "task_affinity.json").write_text(json.dumps(saved))
    callback.on_train_begin(args, SimpleNamespace(global_step=2, is_world_process_zero=True), None)
    assert [step for step, _ in callback.history] == [1, 2]
    assert callback.average()[0, 0] == pytest.approx(1.5)


def test_affinity_needs_shared_parameters_and_valid_arguments(tmp_path, tokenizer, conflict_data):  # noqa: F811
    data = demo_datasets(num_train=16, num_eval=8, seed=1, tasks=TASKS[:2])
    frozen = make_model(TASKS[:2], sharing="lora")
    with pytest.raises(ValueError, match="shares no trainable parameter.*task_affinity_steps=0"):
        make_trainer(tmp_path, tokenizer, data, model=frozen, task_affinity_steps=1)
    for field, value in (("task_affinity_steps", -1), ("task_affinity_lr", 0.0), ("task_affinity_groups", 0)):
        with pytest.raises(ValueError, match=field):
            MultiTaskTrainingArguments(output_dir=str(tmp_path), **{field: value})


# ------------------------------------------------------------------ CLI


def test_cli_reads_a_run_and_suggests_groups(tmp_path, capsys):
    z = [[0.1, 0.3, -0.2], [0.2, 0.1, -0.1], [-0.3, -0.2, 0.1]]
    (tmp_path / "task_affinity.json").write_text(json.dumps({"tasks": ["a", "b", "c"], "affinity": z, "num_measurements": 4}))
    assert main(["affinity", str(tmp_path), "--num-shared-layers", "4"]) == 0
    printed = capsys.readouterr().out
    assert 'groups: [["a", "b"], ["c"]]' in printed and "num_shared_layers: 4" in printed
    assert (tmp_path / "task_affinity.png").exists()
    assert main(["affinity", str(tmp_path / "task_affinity.json"), "--json", "--num-groups", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == [["a", "b", "c"]]


def test_cli_without_an_affinity_file_fails_cleanly(tmp_path, capsys):
    assert main(["affinity", str(tmp_path)]) == 2
    assert "task_affinity_steps" in capsys.readouterr().err
