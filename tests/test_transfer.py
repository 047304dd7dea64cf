import copy
import json
import random

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, inject_adapter_in_model

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, TaskError
from hf_mtl.adaptation import FreezeError, apply_freeze, learn_new_task, lora_pattern
from hf_mtl.sampling import MultiTaskBatchSampler, build_task_sampler

from .conftest import tiny_bert_config


# A tiny world where an old task (warm vs cool colour) and a new one (which animal) read different words of the
# same sentences: a small encoder learns the old task perfectly, and fine-tuning on the new task alone at a high
# learning rate drifts the encoder away from what the old head reads.
COLOURS = {"red": "warm", "yellow": "warm", "orange": "warm", "blue": "cool", "green": "cool", "purple": "cool"}
ANIMALS = ["cat", "dog", "bird", "fish"]
FILLER = ["the", "a", "saw", "near", "house", "tree", "today", "big", "small", "old"]
OLD = {"name": "warmth", "type": "sequence_classification", "labels": ["cool", "warm"]}
NEW = {"name": "animal", "type": "sequence_classification", "labels": ANIMALS}



def unchanged(after, before):
    """Equal, or (a per-task table such as the task embedding, grown by the new task's row) equal on the old rows."""
    if after.shape != before.shape and after.shape[1:] == before.shape[1:] and after.shape[0] > before.shape[0]:
        after = after[: before.shape[0]]
    return torch.equal(after, before)

def make_data(n, seed):
    rng = random.Random(seed)
    old, new = [], []
    for _ in range(n):
        colour, animal = rng.choice(list(COLOURS)), rng.choice(ANIMALS)
        words = rng.sample(FILLER, 4) + [colour, animal]
        rng.shuffle(words)
        old.append({"text": " ".join(words), "label": COLOURS[colour]})
        new.append({"text": " ".join(words), "label": animal})
    return Dataset.from_list(old), Dataset.from_list(new)


@pytest.fixture(scope="module")
def data():
    old_train, new_train = make_data(200, 0)
    old_eval, new_eval = make_data(100, 1)
    return {"old_train": old_train, "new_train": new_train, "old_eval": old_eval, "new_eval": new_eval}


def training_args(tmp_path, steps, lr, **overrides):
    values = dict(
        output_dir=str(tmp_path), max_steps=steps, learning_rate=lr, per_device_train_batch_size=16, max_seq_length=16,
        save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=1000, seed=1,
        # These tests measure how the encoder drifts at a high rate; the ×10 head rate of the defaults would make the
        # heads, not the encoder, the thing that moves (lr 1e-2 × 10 diverges on this tiny model).
        head_lr_multiplier=1.0,
    )
    values.update(overrides)
    return MultiTaskTrainingArguments(**values)


def make_model(tasks=(OLD,), layers=2):
    torch.manual_seed(0)
    encoder = tiny_bert_config(vocab_size=30522, num_hidden_layers=layers, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    # With a [CLS] task embedding, so the freeze rules are tested on it too.
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=list(tasks), task_embedding="cls"))


@pytest.fixture(scope="module")
def trained_old_model(tokenizer, data, tmp_path_factory):
    model = make_model()
    trainer = MultiTaskTrainer(
        model=model, args=training_args(tmp_path_factory.mktemp("base"), 60, 5e-3),
        train_dataset={"warmth": data["old_train"]}, eval_dataset={"warmth": data["old_eval"]}, processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.evaluate()["eval_warmth_accuracy"] >= 0.95  # the premise of the forgetting test
    return model


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ------------------------------------------------------------------ freezing


def test_frozen_parameters_do_not_change_in_training(tmp_path, tokenizer, data, trained_old_model):
    result = learn_new_task(
        copy.deepcopy(trained_old_model), NEW, {"animal": data["new_train"]}, training_args(tmp_path, 6, 1e-2), tokenizer,
        freeze=["top-k:1", "pattern:LayerNorm"],
    )
    before, after = snapshot(trained_old_model), snapshot(result.model)
    for name, value in after.items():
        if name in before and name in result.freeze_report.frozen:
            assert unchanged(value, before[name]), f"frozen {name} changed"
    assert not torch.equal(after["encoder.encoder.layer.1.attention.self.query.weight"], before["encoder.encoder.layer.1.attention.self.query.weight"])
    assert "encoder.encoder.layer.1.output.LayerNorm.weight" in result.freeze_report.frozen
    assert all(name.startswith(("encoder.encoder.layer.1.", "heads.animal.")) for name in result.freeze_report.trainable)
    counted = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    assert result.freeze_report.trainable_parameters == counted
    assert result.report.freeze["trainable_parameters"] == counted
    assert "trainable params" in result.freeze_report.summary()


@pytest.mark.parametrize(
    "rules, trainable_prefixes",
    [
        ("none", ("encoder.", "task_embedding.", "heads.warmth.", "heads.animal.")),
        ("head", ("heads.animal.",)),
        ("top-k:2", ("encoder.encoder.layer.1.", "encoder.encoder.layer.2.", "heads.animal.")),
        ("layers:0-1", ("encoder.embeddings.", "task_embedding.", "encoder.encoder.layer.2.", "heads.")),
        (["layers:-1", "embeddings"], ("encoder.encoder.layer.0.", "encoder.encoder.layer.1.", "heads.")),
        ("pattern:^heads\\.warmth\\.", ("encoder.", "task_embedding.", "heads.animal.")),
    ],
)
def test_freeze_rules_select_what_trains(rules, trainable_prefixes):
    model = make_model(tasks=(OLD, NEW), layers=3)
    report = apply_freeze(model, rules)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith(trainable_prefixes) for name in trainable), trainable
    for prefix in trainable_prefixes:  # and every prefix named does train
        assert any(name.startswith(prefix) for name in trainable), prefix
    assert report.trainable == trainable


def test_adapters_rule_trains_only_the_tasks_lora_adapter_and_head(tmp_path, tokenizer, data):
    """`adapters` picks peft's `lora_A/lora_B.<task>` names: the pattern the per-task LoRA sharing scheme uses."""
    model = make_model(tasks=(OLD, NEW))
    for task in ("warmth", "animal"):
        inject_adapter_in_model(LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]), model.encoder, adapter_name=task)
    report = apply_freeze(model, "adapters", tasks=["animal"])
    assert report.trainable and all(
        ".lora_A.animal." in n or ".lora_B.animal." in n or n.startswith("heads.animal.") for n in report.trainable
    )
    assert any(".lora_B.animal." in n for n in report.trainable)
    assert report.groups()["lora adapters"] == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)
    before = snapshot(model)
    trainer = MultiTaskTrainer(
        model=model, args=training_args(tmp_path, 3, 1e-2),
        train_dataset={"warmth": data["old_train"], "animal": data["new_train"]}, processing_class=tokenizer,
    )
    trainer.train()
    after = snapshot(model)
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed and changed <= set(report.trainable)
    assert any(".lora_A.animal." in n for n in changed)
    assert lora_pattern("animal") == r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.animal(\.|$)"



def test_learn_new_task_on_a_lora_model_trains_only_the_new_adapter_and_head(tmp_path, tokenizer, data):
    """The real path: a model with sharing='lora' gets the new task's adapter from `add_task`, and `adapters`
    trains that adapter and the new head only; the old task's outputs stay exactly as they were."""
    torch.manual_seed(0)
    encoder = tiny_bert_config(vocab_size=30522, num_hidden_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=[OLD], sharing="lora",
                                           sharing_kwargs={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0}))
    before = snapshot(model)
    result = learn_new_task(model, NEW, {"animal": data["new_train"]}, training_args(tmp_path, 3, 1e-2), tokenizer,
                            eval_dataset={"warmth": data["old_eval"]}, freeze="adapters")
    trainable = result.freeze_report.trainable
    assert trainable and all(".lora_A.animal." in n or ".lora_B.animal." in n or n.startswith("heads.animal.") for n in trainable)
    after = snapshot(result.model)
    changed = {n for n in after if n not in before or not unchanged(after[n], before[n])}
    assert any(".lora_B.animal." in n for n in changed) and changed <= set(trainable)
    assert result.report.deltas()["warmth"] == 0.0

@pytest.mark.parametrize(
    "rules, message",
    [
        ("pattern:nothing_like_this", "Freeze pattern 'nothing_like_this' matches no parameter"),
        ("pattern:(", "not a valid regular expression"),
        ("adapters", "found no LoRA adapter of task\\(s\\) \\['animal'\\].*sharing='lora'"),
        ("top-k:3", "the encoder has 2 layers, so k must be in 1..2"),
        ("top-k:two", "`top-k` needs a number of layers"),
        ("layers:5", "Layer 5 does not exist"),
        ("layers:3-1", "reversed"),
        ("freeze-all", "Unknown freeze rule 'freeze-all'"),
        (["head", "pattern:heads\\.animal"], "froze every parameter"),
    ],
)
def test_bad_freeze_rules_fail_clearly(rules, message):
    model = make_model(tasks=(OLD, NEW))
    with pytest.raises(FreezeError, match=message):
        apply_freeze(model, rules)


def test_freeze_for_an_unknown_task_fails():
    with pytest.raises(TaskError, match="Unknown task\\(s\\) \\['nope'\\]"):
        apply_freeze(make_model(), "head", tasks=["nope"])


# ------------------------------------------------------------------ rehearsal


def test_rehearsal_sampler_probabilities_and_errors():
    sampler = build_task_sampler("rehearsal", [100, 300, 50], ratio=0.2, new_tasks=[2])
    torch.testing.assert_close(sampler.probabilities(0, 1), torch.tensor([0.05, 0.15, 0.8], dtype=torch.float64))
    uniform = build_task_sampler("rehearsal", [100, 300, 50], ratio=0.2, old_task_weighting="uniform")
    torch.testing.assert_close(uniform.probabilities(0, 1), torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64))
    only_new = build_task_sampler("rehearsal", [100, 300, 50], ratio=0.0)
    batches = MultiTaskBatchSampler([100, 300, 50], only_new, batch_size=4)
    assert all(index >= 400 for batch in batches for index in batch)  # only the new task's rows
    fixed = build_task_sampler("fixed", [10, 10], probabilities=[3, 1])
    torch.testing.assert_close(fixed.probabilities(0, 1), torch.tensor([0.75, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        build_task_sampler("rehearsal", [1, 1], ratio=1.0)
    with pytest.raises(ValueError, match="both new and rehearsed"):
        build_task_sampler("rehearsal", [1, 1], new_tasks=[1], rehearse_tasks=[1])
    with pytest.raises(ValueError, match="task indices in 0..1"):
        build_task_sampler("rehearsal", [1, 1], new_tasks=[5])
    with pytest.raises(ValueError, match="one weight per task"):
        build_task_sampler("fixed", [1, 1], probabilities=[1.0])
    args = MultiTaskTrainingArguments(output_dir="unused", sampling="rehearsal", sampling_kwargs='{"ratio": 0.3}', report_to="none")
    assert args.sampling_kwargs == {"ratio": 0.3}


@pytest.mark.slow
def test_rehearsal_keeps_the_old_task_where_plain_fine_tuning_forgets(tmp_path, tokenizer, data, trained_old_model):
    runs = {}
    for ratio in (0.0, 0.3):
        result = learn_new_task(
            copy.deepcopy(trained_old_model), NEW, {"animal": data["new_train"], "warmth": data["old_train"]},
            training_args(tmp_path / str(ratio), 60, 1e-2), tokenizer,
            eval_dataset={"warmth": data["old_eval"], "animal": data["new_eval"]}, freeze="none", rehearsal=ratio,
        )
        runs[ratio] = result.report
    assert runs[0.0].before["warmth"]["accuracy"] >= 0.95
    assert runs[0.3].forgetting()["warmth"] <= 0.05  # within tolerance with rehearsal
    assert runs[0.0].forgetting()["warmth"] >= 0.2  # and clearly worse without
    assert runs[0.3].rehearsed_tasks == ["warmth"] and runs[0.0].rehearsed_tasks == []
    markdown = runs[0.0].to_markdown()
    assert "| `warmth` | accuracy |" in markdown and "`animal` (new)" in markdown
    runs[0.3].save(str(tmp_path / "report"))
    saved = json.loads((tmp_path / "report" / "transfer_report.json").read_text())
    assert saved["forgetting"]["warmth"] == runs[0.3].forgetting()["warmth"]


def test_head_only_transfer_leaves_old_tasks_exactly_as_they_were(tmp_path, tokenizer, data, trained_old_model):
    result = learn_new_task(
        copy.deepcopy(trained_old_model), NEW, {"animal": data["new_train"]}, training_args(tmp_path, 5, 1e-2), tokenizer,
        eval_dataset={"warmth": data["old_eval"], "animal": data["new_eval"]}, freeze="head",
    )
    assert result.report.deltas()["warmth"] == 0.0
    assert result.report.after["warmth"] == pytest.approx({**result.report.before["warmth"]})
    assert result.freeze_report.trainable == [n for n, _ in result.model.heads["animal"].named_parameters(prefix="heads.animal")]


def test_learn_new_task_rejects_bad_input(tmp_path, tokenizer, data, trained_old_model):
    args = training_args(tmp_path, 2, 1e-3)
    with pytest.raises(TaskError, match="already a task of this model"):
        learn_new_task(copy.deepcopy(trained_old_model), OLD, {"warmth": data["old_train"]}, args, tokenizer)
    with pytest.raises(TaskError, match="Data for unknown task\\(s\\) \\['colour'\\]"):
        learn_new_task(copy.deepcopy(trained_old_model), NEW, {"animal": data["new_train"], "colour": data["old_train"]}, args, tokenizer)
    with pytest.raises(TaskError, match="needs training data of at least one old task"):
        learn_new_task(copy.deepcopy(trained_old_model), NEW, {"animal": data["new_train"]}, args, tokenizer, rehearsal=0.2)
    with pytest.raises(TaskError, match="No training data for the new task 'animal'"):
        learn_new_task(copy.deepcopy(trained_old_model), NEW, {"warmth": data["old_train"]}, args, tokenizer)
