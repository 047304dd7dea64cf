"""AdaShare (sharing='adashare'): Gumbel-softmax search, regularisers, temperature schedule, the fixed policy (saved,
reloaded, really skipping layers), the trainer integration and bad options. The registry matrix
(tests/test_sharing_schemes.py) covers mixed batches, save/load, from_backbone and adding/removing tasks."""

import json

import pytest
import torch
from transformers import AutoModel

from hf_mtl import MultiTaskConfig, MultiTaskModel, TaskError
from hf_mtl.data.demo_data import demo_datasets

from .conftest import tiny_bert_config
from .test_sharing_schemes import MIXABLE, mixed_batch, mixed_labels
from .test_trainer import make_model, make_trainer


NAMES = [task["name"] for task in MIXABLE]


def build(dropout=0.0, layers=2, **options):
    torch.manual_seed(0)
    encoder = tiny_bert_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_hidden_layers=layers)
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=MIXABLE, sharing="adashare", sharing_kwargs=options))


def count_calls(model):
    """Rows each wrapped layer's block receives, per call."""
    calls = [[] for _ in model.encoder.encoder.layer]
    for i, layer in enumerate(model.encoder.encoder.layer):
        layer.block.register_forward_hook(lambda m, args, out, i=i: calls[i].append(args[0].shape[0]))
    return calls


def test_the_search_samples_hard_decisions_and_the_logits_get_gradients():
    model = build().train()
    seen = []
    for layer in model.encoder.encoder.layer:
        layer.register_forward_pre_hook(lambda m, args: seen.append(m.decision[1].detach().clone()))
    input_ids, mask, task_ids = mixed_batch()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=mixed_labels(task_ids, 9))
    assert all(kind == "soft" for kind, _ in [("soft", d) for d in seen]) and len(seen) == 2
    for decisions in seen:  # the forward pass is discrete: every row executes (1) or skips (0) each layer
        assert decisions.shape == (8,) and set(decisions.tolist()) <= {0.0, 1.0}
    assert set(out.auxiliary_losses) == {"adashare_sparsity", "adashare_sharing"}
    (out.loss + out.auxiliary_losses["adashare_sparsity"]).backward()
    for task in NAMES:
        grad = model.sharing.policy_logits[task].grad
        assert grad is not None and grad.abs().sum() > 0, task


def test_a_skipped_row_passes_unchanged_during_the_search():
    model = build().train()
    with torch.no_grad():  # sst2 executes every layer, ner skips every layer (practically certain samples)
        for task in NAMES:
            model.sharing.policy_logits[task].copy_(torch.tensor([[30.0, -30.0]] * 2))
        model.sharing.policy_logits["ner"].copy_(torch.tensor([[-30.0, 30.0]] * 2))
    model.sharing.temperature = 0.01
    input_ids, mask, task_ids = mixed_batch()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, output_hidden_states=True)
    ner = (task_ids == NAMES.index("ner")).nonzero(as_tuple=True)[0]
    embeddings = out.hidden_states[0]
    for hidden in out.hidden_states[1:]:
        torch.testing.assert_close(hidden[ner], embeddings[ner])  # identity for the skipping rows
    others = (task_ids != NAMES.index("ner")).nonzero(as_tuple=True)[0]
    assert not torch.allclose(out.hidden_states[2][others], embeddings[others])


def test_regularisers_push_towards_skipping_and_towards_agreement_in_low_layers():
    model = build(layers=3)
    losses = model.sharing.regularisers(NAMES)
    assert losses["adashare_sharing"].item() == pytest.approx(0.0)  # every task starts with the same logits
    losses["adashare_sparsity"].backward()
    grad = model.sharing.policy_logits["sst2"].grad
    assert (grad[:, 0] > 0).all() and (grad[:, 1] < 0).all()  # descent lowers execute, raises skip
    with torch.no_grad():
        model.sharing.policy_logits["sst2"][0, 0] += 2.0  # disagree in the lowest layer ...
    low = model.sharing.regularisers(NAMES)["adashare_sharing"].item()
    with torch.no_grad():
        model.sharing.policy_logits["sst2"][0, 0] -= 2.0
        model.sharing.policy_logits["sst2"][2, 0] += 2.0  # ... or as much in the top one
    high = model.sharing.regularisers(NAMES)["adashare_sharing"].item()
    assert low > high > 0


def test_temperature_anneals_and_the_search_ends_at_search_steps():
    model = build(initial_temperature=4.0, final_temperature=0.25, search_steps=10)
    sharing = model.sharing
    sharing.on_step_begin(model, 0, 100)
    assert sharing.temperature == pytest.approx(4.0)
    sharing.on_step_begin(model, 9, 100)
    assert sharing.temperature == pytest.approx(0.25)  # the last search step runs at the final temperature
    sharing.on_step_begin(model, 4.5, 100)
    assert sharing.temperature == pytest.approx(1.0)  # geometric: halfway between 4 and 0.25
    assert sharing.searching and model.config.sharing_kwargs["policy"] is None
    with torch.no_grad():
        sharing.policy_logits["sst2"][1] = torch.tensor([-1.0, 1.0])
    sharing.on_step_begin(model, 10, 100)
    assert not sharing.searching
    policy = model.config.sharing_kwargs["policy"]
    assert policy["sst2"] == [1, 0] and policy["ner"] == [1, 1]
    assert not any(p.requires_grad for p in sharing.policy_logits.values())
    assert sharing.optimizer_parameter_groups(model) == []


def test_a_fixed_policy_really_skips_layers_and_survives_save_and_load(tmp_path):
    policy = {name: [1, 1] for name in NAMES} | {"sst2": [1, 0], "ner": [0, 0]}
    model = build(policy=policy).eval()
    calls = count_calls(model)
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        model(input_ids=input_ids[:3], attention_mask=mask[:3], task="ner")
    assert calls == [[], []]  # ner skips both layers: neither block ran
    with torch.no_grad():
        model(input_ids=input_ids[:3], attention_mask=mask[:3], task="sst2")
    assert calls == [[3], []]
    calls[0].clear()
    with torch.no_grad():
        mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    executes = torch.tensor([policy[NAMES[i]] for i in task_ids.tolist()])
    assert calls == [[int(executes[:, 0].sum())], [int(executes[:, 1].sum())]]  # only the rows that execute each layer
    # Training under a fixed policy follows it too (no sampling, no regularisers).
    model.train()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=mixed_labels(task_ids, 9))
    assert out.auxiliary_losses is None
    model.eval().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["sharing_kwargs"]["policy"] == policy
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.sharing.policy() == policy
    with torch.no_grad():
        again = loaded(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    for name in mixed.task_logits:
        assert torch.equal(again.task_logits[name], mixed.task_logits[name])


def test_at_low_temperature_the_learned_policy_is_hard_and_reloads_identically(tmp_path):
    model = build(initial_temperature=1e-3, final_temperature=1e-3)
    with torch.no_grad():
        for task in NAMES:
            model.sharing.policy_logits[task].normal_(0, 3.0)
    input_ids, mask, task_ids = mixed_batch()
    logits = torch.stack([model.sharing.policy_logits[t] for t in NAMES])
    soft = torch.nn.functional.gumbel_softmax(logits, tau=model.sharing.temperature, hard=False, dim=-1)
    assert ((soft - soft.round()).abs() < 1e-3).float().mean() > 0.95  # the relaxation itself is (almost) one-hot
    expected_policy = model.sharing.policy()
    policy = model.sharing.fix_policy(model)
    assert policy == expected_policy and model.config.sharing_kwargs["policy"] == policy
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        for _ in range(2):  # deterministic: same outputs on every call and after reloading
            a = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids).task_logits
            b = loaded(input_ids=input_ids, attention_mask=mask, task_ids=task_ids).task_logits
            for name in a:
                assert torch.equal(a[name], b[name])


def test_trainer_searches_logs_fixes_and_draws_the_policy(tmp_path, tokenizer):  # noqa: F811
    tasks = ["sentiment", "rating"]
    data = demo_datasets(num_train=32, num_eval=8, seed=1, tasks=tasks)
    options = {"initial_temperature": 2.0, "final_temperature": 0.5, "sparsity_weight": 0.5, "policy_lr": 0.05}
    model = make_model(tasks, dropout=0.0, sharing="adashare", sharing_kwargs=options)
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, eval_data=False, max_steps=4, logging_steps=2,
                           batching="mixed", weight_decay=0.1)
    start = {task: p.detach().clone() for task, p in model.sharing.policy_logits.items()}
    trainer.train()
    groups = [g for g in trainer.optimizer.param_groups if g.get("hf_mtl_sharing")]
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0 and groups[0]["initial_lr"] == 0.05
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.sharing.policy_logits.values()}
    logs = [entry for entry in trainer.state.log_history if "policy/temperature" in entry]
    assert len(logs) == 2 and logs[0]["policy/temperature"] > logs[1]["policy/temperature"]
    assert "loss_adashare_sparsity" in logs[0] and "policy/sentiment/layer_1" in logs[0]
    for task in tasks:  # the logits learned (and the sparsity term pushed execute down)
        moved = model.sharing.policy_logits[task] - start[task]
        assert moved[:, 0].sum() < 0
    policy = model.config.sharing_kwargs["policy"]
    assert set(policy) == set(tasks) and all(len(v) == 2 for v in policy.values())
    out = tmp_path / "out"
    result = json.loads((out / "adashare_policy.json").read_text())
    assert result["policy"] == [policy[t] for t in tasks]
    assert (out / "adashare_policy.png").stat().st_size > 1000
    trainer.save_model(str(out))
    assert AutoModel.from_pretrained(out).sharing.policy() == policy


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"initial_temperature": 0}, ValueError, r"`initial_temperature` must be a number > 0 .*got 0"),
        ({"final_temperature": -1.0}, ValueError, r"`final_temperature` must be a number > 0 .*got -1.0"),
        ({"initial_temperature": 1.0, "final_temperature": 2.0}, ValueError, r"final_temperature=2.0 must be <= initial_temperature=1.0"),
        ({"search_steps": 0}, ValueError, r"`search_steps` must be an integer >= 1 or None.*got 0"),
        ({"sparsity_weight": -0.1}, ValueError, r"`sparsity_weight` must be a number >= 0, got -0.1"),
        ({"policy_lr": 0.0}, ValueError, r"`policy_lr` must be > 0"),
        ({"initial_execute_probability": 1.0}, ValueError, r"in \(0, 1\), got 1.0"),
        ({"policy": {"sst2": [1, 0]}}, TaskError, r"missing task\(s\) \['nli', 'topics', 'sts', 'ner'\]"),
        ({"policy": {**{n: [1, 1] for n in NAMES}, "ghost": [1, 1]}}, TaskError, r"unknown task\(s\) \['ghost'\]"),
        ({"policy": {n: [1, 1, 1] for n in NAMES}}, ValueError, r"policy of task 'sst2' must be a list of 2 values"),
        ({"policy": {n: [1, 2] for n in NAMES}}, ValueError, r"1 \(execute\) or 0 \(skip\)"),
        ({"temperature": 1.0}, ValueError, r"Unknown sharing_kwargs \['temperature'\].*initial_temperature"),
    ],
    ids=["zero-temperature", "negative-temperature", "annealing-up", "search-steps", "negative-weight", "policy-lr",
         "probability", "policy-missing-task", "policy-unknown-task", "policy-length", "policy-values", "unknown-key"],
)
def test_bad_adashare_options_fail_when_the_config_is_built(options, error, message):
    with pytest.raises(error, match=message):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="adashare", sharing_kwargs=options)
