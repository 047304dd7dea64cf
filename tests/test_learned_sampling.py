import pytest
import torch
from datasets import Dataset

from hf_mtl.sampling import build_task_sampler

from .test_trainer import make_trainer, params


def _sampler(**kwargs):
    sampler = build_task_sampler("learned", [100, 100, 100], **kwargs)
    sampler.task_names = ["improving", "flat", "worse"]
    return sampler


def evaluations(steps):
    for t in range(steps):
        yield {"eval_improving_loss": 1.0 * 0.8**t, "eval_flat_loss": 1.0, "eval_worse_loss": 1.0 + 0.05 * t}


def test_probability_moves_to_the_improving_task_and_respects_the_floor():
    sampler = _sampler(floor=0.1, init="uniform")
    probabilities = [sampler.probabilities(0, 1)]
    for step, metrics in enumerate(evaluations(12)):
        sampler.on_evaluate(step, metrics)
        probabilities.append(sampler.probabilities(0, 1))
    improving = [float(p[0]) for p in probabilities]
    assert improving[-1] > 0.6 and all(b >= a for a, b in zip(improving[1:], improving[2:]))
    assert float(probabilities[-1][2]) < float(probabilities[-1][1])  # the worsening task loses most
    assert all(float(p.min()) >= 0.1 - 1e-12 for p in probabilities)
    assert all(abs(float(p.sum()) - 1) < 1e-9 for p in probabilities)


def test_train_loss_signal_updates_every_window():
    sampler = _sampler(signal="train_loss", update_steps=2, init="uniform")
    for step in range(8):
        sampler.on_step_end(step, {"improving": 1.0 * 0.7**step, "flat": 1.0, "worse": 1.0})
    p = sampler.probabilities(0, 1)
    assert p[0] > p[1] and p[0] > 1 / 3


def test_recorded_probabilities_replay_and_state_round_trip():
    sampler = _sampler()
    first = [sampler.probabilities_at(step, 0, 1).clone() for step in range(3)]
    for step, metrics in enumerate(evaluations(4)):
        sampler.on_evaluate(step, metrics)
    assert all(torch.equal(sampler.probabilities_at(step, 0, 1), first[step]) for step in range(3))  # replay
    later = sampler.probabilities_at(3, 0, 1)
    assert not torch.equal(later, first[0])
    restored = _sampler()
    restored.load_state_dict({k: v.clone() for k, v in sampler.state_dict().items()})
    for step, metrics in enumerate(evaluations(3)):
        sampler.on_evaluate(step + 10, metrics)
        restored.on_evaluate(step + 10, metrics)
    assert torch.equal(sampler.probabilities_at(9, 0, 1), restored.probabilities_at(9, 0, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"floor": 0.4}, r"`floor` must be in \[0, 1/3\)"),
        ({"temperature": 0}, "`temperature` must be > 0"),
        ({"signal": "accuracy"}, "Unknown learned-sampling signal 'accuracy'. Choose one of: eval_loss, train_loss"),
        ({"lr": -1}, "`lr` must be a positive number"),
        ({"init": "random"}, "`init` must be 'proportional' or 'uniform'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _sampler(**kwargs)


@pytest.fixture(scope="module")
def learnable_and_noise():
    from hf_mtl.data.demo_data import demo_datasets

    data = demo_datasets(num_train=96, num_eval=48, seed=2, tasks=["sentiment"])["sentiment"]
    generator = torch.Generator().manual_seed(0)

    def shuffled(split):  # same texts, labels drawn at random: nothing to learn
        labels = torch.randint(0, 2, (len(split),), generator=generator).tolist()
        return Dataset.from_dict({"text": split["text"], "label": [["negative", "positive"][i] for i in labels]})

    return {"sentiment": data, "noise": {"train": shuffled(data["train"]), "validation": shuffled(data["validation"])}}


def test_trainer_needs_evaluation_for_the_eval_signal(tmp_path, tokenizer, learnable_and_noise):
    with pytest.raises(ValueError, match="learns from evaluation losses: set eval_strategy"):
        make_trainer(tmp_path, tokenizer, learnable_and_noise, model=_two_task_model(), sampling="learned")


def _two_task_model():
    from hf_mtl import MultiTaskConfig, MultiTaskModel

    from .conftest import tiny_bert_config

    torch.manual_seed(0)
    tasks = [
        {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]},
        {"name": "noise", "type": "sequence_classification", "labels": ["negative", "positive"]},
    ]
    return MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(vocab_size=30522), tasks=tasks))


@pytest.mark.slow
def test_trainer_shifts_sampling_to_the_learnable_task_and_resumes_exactly(tmp_path, tokenizer, learnable_and_noise):
    common = dict(
        sampling="learned", sampling_kwargs={"lr": 10.0, "floor": 0.05}, eval_strategy="steps", eval_steps=4,
        max_steps=24, learning_rate=3e-3, save_strategy="steps", save_steps=12, logging_steps=4,
    )
    full = make_trainer(tmp_path / "full", tokenizer, learnable_and_noise, model=_two_task_model(), **common)
    full.train()
    logs = [entry for entry in full.state.log_history if "sampling_prob_sentiment" in entry]
    assert logs[-1]["sampling_prob_sentiment"] > logs[0]["sampling_prob_sentiment"]
    assert logs[-1]["sampling_prob_sentiment"] > 0.5 > logs[-1]["sampling_prob_noise"] >= 0.05 - 1e-9
    resumed = make_trainer(tmp_path / "resumed", tokenizer, learnable_and_noise, model=_two_task_model(), **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-12"))
    assert torch.equal(resumed.task_sampler.history, full.task_sampler.history)
    final = params(full.model)
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p.detach(), final[name], rtol=0, atol=0, msg=name)
