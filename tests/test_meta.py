import copy
import os

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch import nn
from torch.func import functional_call

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.adaptation.meta import (
    META_ALGORITHMS,
    InnerLoop,
    MetaLearningArguments,
    MetaTrainer,
    balanced_order,
    sample_episode,
)
from hf_mtl.data import DataError, preprocess_task
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.errors import TaskError

from .conftest import tiny_bert_config


# ------------------------------------------------------------------ update rules on a linear model, by hand


def _quadratic_problem():
    """L(w) = 0.5 * mean((X w - y)^2): gradient X^T (X w - y) / n, Hessian X^T X / n (constant)."""
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(4, 3)), rng.normal(size=4)
    xq, yq = rng.normal(size=(5, 3)), rng.normal(size=5)
    w0 = rng.normal(size=3)
    return xs, ys, xq, yq, w0


def _torch_setup(xs, ys, xq, yq, w0):
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w0).view(1, 3))

    def loss(x, y):
        x, y = torch.tensor(x), torch.tensor(y)
        return lambda params: 0.5 * ((functional_call(model, dict(params), (x,)).view(-1) - y) ** 2).mean()

    return model, loss(xs, ys), loss(xq, yq)


def _grad(x, y, w):
    return x.T @ (x @ w - y) / len(y)


@pytest.mark.parametrize("algorithm", ["fomaml", "reptile", "maml"])
def test_update_rules_match_a_hand_computed_step(algorithm):
    xs, ys, xq, yq, w0 = _quadratic_problem()
    alpha, steps = 0.3, 2
    model, support, query = _torch_setup(xs, ys, xq, yq, w0)
    params = {"weight": model.weight}
    grads, metrics = META_ALGORITHMS.get(algorithm)().meta_gradients(
        params, {"weight"}, ["weight"], support, query, InnerLoop(steps, alpha)
    )
    w = w0.copy()
    for _ in range(steps):
        w = w - alpha * _grad(xs, ys, w)
    hessian = xs.T @ xs / len(ys)
    expected = {
        "fomaml": _grad(xq, yq, w),
        "reptile": w0 - w,
        # d w'/d w0 = (I - alpha H)^steps for a quadratic support loss
        "maml": np.linalg.matrix_power(np.eye(3) - alpha * hessian, steps).T @ _grad(xq, yq, w),
    }[algorithm]
    np.testing.assert_allclose(grads["weight"].numpy().reshape(-1), expected, rtol=1e-10, atol=1e-12)
    assert metrics["support_loss"] == pytest.approx(0.5 * np.mean((xs @ w0 - ys) ** 2))
    assert metrics["query_loss"] == pytest.approx(0.5 * np.mean((xq @ w - yq) ** 2))
    assert model.weight.detach().numpy().reshape(-1) == pytest.approx(w0)  # the model itself is untouched


def test_head_only_inner_loop_still_gives_the_encoder_a_first_order_gradient():
    xs, ys, xq, yq, w0 = _quadratic_problem()
    model, support, query = _torch_setup(xs, ys, xq, yq, w0)
    grads, _ = META_ALGORITHMS.get("fomaml")().meta_gradients(
        {"weight": model.weight}, set(), ["weight"], support, query, InnerLoop(3, 0.3)
    )
    np.testing.assert_allclose(grads["weight"].numpy().reshape(-1), _grad(xq, yq, w0), rtol=1e-10)


# ------------------------------------------------------------------ episodes


def test_balanced_order_is_balanced_nested_and_seeded():
    labels = [0] * 30 + [1] * 6 + [2] * 12
    order = balanced_order(labels, len(labels), torch.Generator().manual_seed(3))
    assert sorted(order) == list(range(len(labels)))
    counts = np.bincount([labels[i] for i in order[:9]], minlength=3)
    assert counts.tolist() == [3, 3, 3]
    counts = np.bincount([labels[i] for i in order[:24]], minlength=3)
    assert counts.tolist() == [9, 6, 9]  # class 1 runs out at 6, the others share the rest
    assert order == balanced_order(labels, len(labels), torch.Generator().manual_seed(3))
    assert order != balanced_order(labels, len(labels), torch.Generator().manual_seed(4))


def test_episode_support_and_query_are_disjoint_and_sized():
    spec = MultiTaskConfig(tasks=demo_tasks(["sentiment"])).task_specs[0]
    data = Dataset.from_dict({"input_ids": [[1, 2]] * 40, "labels": [i % 2 for i in range(40)]})
    episode = sample_episode(data, spec, 6, 10, torch.Generator().manual_seed(0))
    assert len(episode.support) == 6 and len(episode.query) == 10
    assert not set(episode.support) & set(episode.query)
    assert sorted(data["labels"][i] for i in episode.support) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="fewer than an episode needs"):
        sample_episode(data, spec, 32, 16, torch.Generator())


# ------------------------------------------------------------------ MetaTrainer on a tiny MultiTaskModel


TASKS = ["sentiment", "topics"]


@pytest.fixture(scope="module")
def data():
    return demo_datasets(num_train=40, num_eval=30, seed=2, tasks=TASKS)


def make_model(tasks=TASKS, dropout=0.0):
    torch.manual_seed(0)
    encoder = tiny_bert_config(vocab_size=30522, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(tasks)))


def make_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "meta"), meta_steps=2, meta_batch_size=2, k_shot=4, query_size=6, inner_steps=2,
        inner_lr=0.05, inner_head_lr=0.5, max_seq_length=24, disable_tqdm=True, logging_steps=1,
    )
    values.update(overrides)
    return MetaLearningArguments(**values)


def _manual_episode(model, tokenizer, data, task, support, query, inner_lr, head_lr, steps, algorithm):
    """The textbook loop on a deep copy: SGD on the support set, then the query gradient (FOMAML) or the
    displacement (Reptile) of the encoder."""
    spec = model.config.task_spec(task)
    rows = preprocess_task(data[task]["train"], spec, tokenizer, 24, "train")
    from hf_mtl.data import MultiTaskCollator

    collate = MultiTaskCollator(tokenizer, model.config.task_specs).for_task(task)
    batch = lambda indices: collate([{k: rows[i][k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")} for i in indices])  # noqa: E731
    clone = copy.deepcopy(model)
    clone.train()
    optimizer = torch.optim.SGD(
        [
            {"params": [p for n, p in clone.named_parameters() if n.startswith("encoder.")], "lr": inner_lr},
            {"params": list(clone.heads[task].parameters()), "lr": head_lr},
        ]
    )
    for _ in range(steps):
        optimizer.zero_grad()
        clone(**batch(support)).loss.backward()
        optimizer.step()
    if algorithm == "reptile":
        theta = dict(model.named_parameters())
        return {n: theta[n].detach() - p.detach() for n, p in clone.named_parameters() if n.startswith("encoder.")}
    clone.zero_grad()
    clone(**batch(query)).loss.backward()
    return {n: p.grad.detach().clone() for n, p in clone.named_parameters() if n.startswith("encoder.")}


@pytest.mark.parametrize("algorithm", ["fomaml", "reptile"])
def test_meta_step_of_the_trainer_matches_the_textbook_loop(tmp_path, tokenizer, data, algorithm):
    """One outer SGD step of MetaTrainer == θ - β · g, with g from an explicit deep-copy fine-tuning loop on the
    same episode (the task's own head, so nothing random is involved)."""
    model = make_model(["sentiment"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = make_args(
        tmp_path, algorithm=algorithm, meta_steps=1, meta_batch_size=1, meta_optimizer="sgd", meta_lr=0.1,
        max_grad_norm=0.0, episode_head="task", seed=5,
    )
    trainer = MetaTrainer(model, args, {"sentiment": data["sentiment"]["train"]}, tokenizer)
    # The trainer's draws, replayed: one task draw, then the episode.
    generator = torch.Generator().manual_seed(5)
    torch.multinomial(torch.ones(1), 1, generator=generator)
    episode = sample_episode(trainer.train_data["sentiment"], trainer.specs["sentiment"], 4, 6, generator)
    expected = _manual_episode(
        make_model(["sentiment"]), tokenizer, data, "sentiment", episode.support, episode.query, 0.05, 0.5, 2, algorithm
    )
    trainer.train()
    after = dict(model.named_parameters())
    for name, grad in expected.items():
        torch.testing.assert_close(after[name].detach(), before[name] - 0.1 * grad, rtol=1e-4, atol=1e-6)
    changed = [n for n in expected if not torch.equal(after[n].detach(), before[n])]
    assert changed, "the encoder did not move"
    if algorithm == "fomaml":  # the task's own head is meta-learned too with episode_head='task'
        assert not torch.equal(after["heads.sentiment.out_proj.weight"].detach(), before["heads.sentiment.out_proj.weight"])


def test_fresh_heads_leave_the_task_heads_alone_and_the_result_loads(tmp_path, tokenizer, data):
    model = make_model(dropout=0.1)
    heads = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("heads.")}
    encoder = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("encoder.encoder.layer.1")}
    args = make_args(tmp_path, algorithm="fomaml", eval_steps=2, eval_episodes=1)
    trainer = MetaTrainer(
        model, args, {t: data[t]["train"] for t in TASKS}, tokenizer, eval_dataset={t: data[t]["validation"] for t in TASKS}
    )
    logs = trainer.train()
    assert np.isfinite(logs["query_loss"]) and "eval_sentiment_accuracy" in logs and "eval_topics_micro_f1" in logs
    assert all(torch.equal(p.detach(), heads[n]) for n, p in model.named_parameters() if n in heads)
    assert any(not torch.equal(p.detach(), encoder[n]) for n, p in model.named_parameters() if n in encoder)
    loaded = MultiTaskModel.from_pretrained(args.output_dir)
    for name, parameter in loaded.named_parameters():
        torch.testing.assert_close(parameter, dict(model.named_parameters())[name])
    assert os.path.isfile(os.path.join(args.output_dir, "meta_learning_args.json"))


def test_maml_second_order_step_runs_on_the_tiny_model(tmp_path, tokenizer, data):
    model = make_model(["sentiment"])
    before = model.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    args = make_args(tmp_path, algorithm="maml", meta_steps=1, meta_batch_size=1, inner_steps=1)
    MetaTrainer(model, args, {"sentiment": data["sentiment"]["train"]}, tokenizer).train()
    assert not torch.equal(model.encoder.encoder.layer[0].attention.self.query.weight.detach(), before)


def test_resume_continues_exactly(tmp_path, tokenizer, data):
    train = {t: data[t]["train"] for t in TASKS}
    full = make_model(dropout=0.1)
    MetaTrainer(full, make_args(tmp_path / "a", meta_steps=3), train, tokenizer).train()
    first = make_model(dropout=0.1)
    MetaTrainer(first, make_args(tmp_path / "b", meta_steps=1, save_steps=1), train, tokenizer).train()
    resumed = make_model(dropout=0.1)
    torch.manual_seed(123)  # the checkpoint restores the RNG, so whatever happened before does not matter
    MetaTrainer(resumed, make_args(tmp_path / "c", meta_steps=3), train, tokenizer).train(
        resume_from_checkpoint=str(tmp_path / "b" / "meta")
    )
    for (name, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"algorithm": "mamal"}, "Unknown meta-learning algorithm 'mamal'.*Did you mean 'maml'"),
        ({"algorithm": "reptile", "inner_adapt": "head"}, "inner_adapt='head' would never change it"),
        ({"query_size": 0}, "query_size must be >= 1"),
        ({"k_shot": 0}, "`k_shot` must be >= 1"),
        ({"inner_lr": 0.0}, "`inner_lr` must be > 0"),
        ({"episode_head": "old"}, "Unknown episode_head 'old'"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


def test_bad_data_fails_before_training(tmp_path, tokenizer, data):
    model = make_model()
    with pytest.raises(TaskError, match=r"Task\(s\) \['ner'\] in the train data are not tasks of the model"):
        MetaTrainer(model, make_args(tmp_path), {"ner": data["sentiment"]["train"]}, tokenizer)
    with pytest.raises(DataError, match="has 40 examples; an episode needs k_shot \\+ query_size = 48"):
        MetaTrainer(model, make_args(tmp_path, k_shot=32, query_size=16), {"sentiment": data["sentiment"]["train"]}, tokenizer)
