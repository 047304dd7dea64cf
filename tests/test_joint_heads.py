"""Joint heads on the same input (`input_group`): one stream of rows, one encoder pass, every head's loss."""

import pytest
import torch
from datasets import Dataset

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, TaskError
from hf_mtl.data.joint import JOINT_PREFIX, training_streams
from hf_mtl.evaluation.comparison import trainer_task_rows
from hf_mtl.tasks import TaskSpec

from .conftest import tiny_bert_config


WORDS = [(["flights", "from", "boston", "to", "denver"], ["O", "O", "B-from", "O", "B-to"], "flight"),
         (["fares", "to", "oslo"], ["O", "O", "B-to"], "airfare"),
         (["cheapest", "flights", "from", "paris"], ["O", "O", "O", "B-from"], "flight"),
         (["ground", "transport", "in", "denver"], ["O", "O", "O", "B-to"], "ground_service")]
TASKS = [
    {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "intent", "type": "sequence_classification", "labels": ["airfare", "flight", "ground_service"],
     "text_columns": ["tokens"], "label_column": "intent", "input_group": "atis"},
    {"name": "slots", "type": "token_classification", "labels": ["O", "B-from", "B-to"], "text_columns": ["tokens"],
     "label_column": "tags", "input_group": "atis"},
]


def atis(n=4):
    rows = (WORDS * n)[: 4 * n]
    return Dataset.from_dict({"tokens": [r[0] for r in rows], "tags": [r[1] for r in rows], "intent": [r[2] for r in rows]})


def sentiment(n=4):
    return Dataset.from_dict({"text": ["a gripping film", "a dull mess"] * 2 * n, "label": ["positive", "negative"] * 2 * n})


def model():
    torch.manual_seed(0)
    return MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(vocab_size=30522), tasks=TASKS))


def trainer(tmp_path, tokenizer, **overrides):  # noqa: F811
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3, logging_steps=1,
                  save_strategy="no", report_to="none", disable_tqdm=True, max_seq_length=32, seed=3)
    return MultiTaskTrainer(model=model(), args=MultiTaskTrainingArguments(**{**values, **overrides}),
                            train_dataset={"sentiment": sentiment(), "intent": atis(), "slots": atis()},
                            eval_dataset={"intent": atis(1), "slots": atis(1)}, processing_class=tokenizer)


def test_streams_put_a_group_behind_its_token_level_member():
    specs = [TaskSpec.from_any(t) for t in TASKS]
    assert training_streams(specs) == [["sentiment"], ["slots", "intent"]]
    with pytest.raises(TaskError, match="multiple choice"):
        training_streams([TaskSpec(name="a", type="multiple_choice", input_group="atis"), specs[1]])


@pytest.mark.parametrize("batching", ["per_task", "mixed"])
def test_a_group_trains_from_one_stream_with_both_losses(tmp_path, tokenizer, batching):  # noqa: F811
    run = trainer(tmp_path, tokenizer, batching=batching)
    assert run.train_dataset.task_names == ["sentiment", "slots"] and run.train_dataset.sizes == [16, 16]
    assert JOINT_PREFIX + "intent" in run.train_dataset.datasets[1].column_names
    batch = next(iter(run.get_train_dataloader()))
    if "joint_labels" in batch:  # a batch with ATIS rows carries the intent labels of those rows
        rows = (batch["task_ids"] == 2) if "task_ids" in batch else torch.ones(len(batch["input_ids"]), dtype=torch.bool)
        assert (batch["joint_labels"]["intent"][rows, 0] >= 0).all()
    run.train()
    logged = [entry for entry in run.state.log_history if "loss_slots" in entry]
    assert logged and all("loss_intent" in entry for entry in logged)  # intent trained on the slots rows, same pass
    assert "sampling_prob_slots+intent" in run.state.log_history[0]
    rows = trainer_task_rows(run)
    assert rows["intent"] == rows["slots"] and rows["sentiment"] + rows["slots"] == 4 * 4
    metrics = run.evaluate()
    assert "eval_intent_accuracy" in metrics and "eval_slots_f1" in metrics  # evaluation stays per task


def test_joint_scoring_equals_scoring_the_head_on_its_own(tokenizer):  # noqa: F811
    net = model().eval()
    words = [r[0] for r in WORDS]
    encoded = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    tags = torch.full(encoded["input_ids"].shape, -100.0)
    for i in range(len(words)):
        previous = None
        for j, word in enumerate(encoded.word_ids(i)):
            if word is not None and word != previous:
                tags[i, j] = TASKS[2]["labels"].index(WORDS[i][1][word])
            previous = word
    intents = torch.tensor([TASKS[1]["labels"].index(r[2]) for r in WORDS])
    joint = net(**encoded, task="slots", labels=tags.long(), joint_labels={"intent": intents.float()[:, None]})
    alone = net(**encoded, task="intent", labels=intents)
    torch.testing.assert_close(joint.task_losses["intent"], alone.task_losses["intent"])
    torch.testing.assert_close(joint.task_logits["intent"], alone.logits)
    assert set(joint.task_losses) == {"slots", "intent"}
    with pytest.raises(TaskError, match="no input_group"):
        net(**encoded, task="slots", labels=tags.long(), joint_labels={"sentiment": intents.float()[:, None]})


def test_group_members_must_label_the_same_rows(tmp_path, tokenizer):  # noqa: F811
    with pytest.raises(TaskError, match="share an input_group but their training data have 16 and 8 rows"):
        MultiTaskTrainer(model=model(), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none"),
                         train_dataset={"sentiment": sentiment(), "intent": atis(2), "slots": atis()},
                         processing_class=tokenizer)


@pytest.mark.parametrize("conditioning", [{"sharing": "lora", "sharing_kwargs": {"freeze_backbone": False, "r": 4}},
                                          {"task_embedding": "cls"}])
def test_a_joint_head_is_encoded_as_its_group_leader_at_evaluation_and_prediction(tokenizer, conditioning):
    """Training encodes a group's rows once, with the leader's task id (slots: the first token-level member), so the
    intent head only ever read slots' adapter / task embedding. Evaluating or predicting intent through intent's own
    (never trained) part would read other states: the model routes every member as its leader."""
    from hf_mtl.inference import MultiTaskPredictor

    torch.manual_seed(0)
    joint = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(vocab_size=30522, hidden_dropout_prob=0.0,
                                                                     attention_probs_dropout_prob=0.0),
                                           tasks=TASKS, **conditioning)).eval()
    with torch.no_grad():
        for name, p in joint.named_parameters():
            if "lora_B" in name or "task_embedding" in name or "heads." in name:
                p.normal_(0, 0.5)
    batch = tokenizer(["flights from boston", "fares to oslo today"], padding=True, return_tensors="pt")
    before = joint(**batch, task="intent").logits

    def perturb(owner: str):
        with torch.no_grad():
            for name, p in joint.named_parameters():
                if f"lora_B.{owner}" in name:
                    p.add_(torch.randn_like(p))
            if joint.task_embedding is not None:  # not a constant: LayerNorm would remove it
                row = joint.task_embedding.weight[joint.config.task_index(owner)]
                row.add_(torch.randn_like(row))

    perturb("intent")
    torch.testing.assert_close(joint(**batch, task="intent").logits, before)  # intent's own part is not its path
    perturb("slots")
    assert (joint(**batch, task="intent").logits - before).abs().max() > 1e-4, "slots' part is intent's path"
    rows = [{"task": task, "text": text} for text in ("flights from boston", "fares to oslo today")
            for task in ("intent", "slots")]
    predicted = MultiTaskPredictor(joint, tokenizer).predict(rows)
    logits = joint(**batch, task="intent").logits.softmax(-1)
    for row, probabilities in zip(predicted[::2], logits):
        assert max(row["scores"].values()) == pytest.approx(float(probabilities.max()), abs=1e-3)
