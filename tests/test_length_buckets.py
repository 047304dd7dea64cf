"""Length-sorted encoder calls (`encoder_length_buckets`): the same outputs and gradients as one padded call."""

import pytest
import torch
from transformers import BertModel

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.sharing.length_buckets import (
    attended_lengths,
    padding_free_in_eval,
    plan_length_buckets,
    run_encoder_in_length_buckets,
)

from .conftest import tiny_bert_config


TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"], "pooling": "mean"},
    {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
    {"name": "sts", "type": "regression"},
]
LENGTHS = [5, 30, 6, 40, 7, 8, 33, 9, 4, 12]
WIDTH = 48


def padded_batch(lengths=LENGTHS, width=WIDTH, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 99, (len(lengths), width), generator=g)
    attention_mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return input_ids * attention_mask, attention_mask


def mixed_batch():
    """`padded_batch()` as a mixed batch of the three `TASKS` (sentence label, token tags, regression target): input
    ids, attention mask, task ids and labels in the mixed collator's padded format."""
    input_ids, attention_mask = padded_batch()
    task_ids = torch.tensor([0, 1, 2, 1, 0, 2, 0, 1, 2, 0])
    labels = torch.full((len(LENGTHS), WIDTH), -100.0)
    for row, task in enumerate(task_ids.tolist()):
        if task == 0:
            labels[row, 0] = row % 2
        elif task == 2:
            labels[row, 0] = 1.5
        else:
            labels[row, 1 : LENGTHS[row] - 1] = row % 3
    return input_ids, attention_mask, task_ids, labels


def record_widths(encoder):
    """The width of every call the encoder receives, and the hook's handle."""
    widths = []
    handle = encoder.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                               with_kwargs=True)
    return widths, handle


def test_attended_lengths_reads_the_last_attended_position():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert attended_lengths(mask).tolist() == [2, 4, 3, 0]


def test_plan_covers_every_row_once_in_parts_of_neighbouring_lengths():
    parts = plan_length_buckets(LENGTHS, max_buckets=4, call_cost=40)
    assert sorted(row for part in parts for row in part) == list(range(len(LENGTHS)))
    assert 1 < len(parts) <= 4
    # Parts are ordered by length and do not interleave: each part's longest row is shorter than the next's shortest.
    for shorter, longer in zip(parts, parts[1:]):
        assert max(LENGTHS[r] for r in shorter) <= min(LENGTHS[r] for r in longer)
    positions = sum(len(part) * max(LENGTHS[r] for r in part) for part in parts)
    assert positions < 0.6 * len(LENGTHS) * max(LENGTHS)


@pytest.mark.parametrize(
    "lengths, max_buckets, call_cost",
    [([20] * 16, 4, 40), ([18, 19, 20, 20], 4, 40), (LENGTHS, 1, 40), (LENGTHS, 4, 10_000), ([7], 4, 0)],
    ids=["equal-lengths", "close-lengths", "one-bucket-allowed", "calls-too-dear", "one-row"],
)
def test_plan_keeps_the_batch_whole_when_splitting_does_not_pay(lengths, max_buckets, call_cost):
    parts = plan_length_buckets(lengths, max_buckets=max_buckets, call_cost=call_cost)
    assert len(parts) == 1 and sorted(parts[0]) == list(range(len(lengths)))


def test_bucketed_encoder_matches_one_padded_call_in_outputs_and_gradients():
    encoder = BertModel(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), add_pooling_layer=False)
    encoder.train()
    input_ids, attention_mask = padded_batch()
    calls = []
    handle = encoder.register_forward_hook(lambda module, args, kwargs_or_out: calls.append(1))

    def states_and_grads(max_buckets):
        encoder.zero_grad()
        calls.clear()
        hidden = run_encoder_in_length_buckets(encoder, {"input_ids": input_ids, "attention_mask": attention_mask},
                                               max_buckets).last_hidden_state
        (hidden * attention_mask[..., None]).pow(2).sum().backward()
        return hidden.detach(), {name: p.grad.clone() for name, p in encoder.named_parameters()}, len(calls)

    whole, whole_grads, whole_calls = states_and_grads(1)
    split, split_grads, split_calls = states_and_grads(4)
    handle.remove()
    assert whole_calls == 1 and split_calls > 1
    assert split.shape == whole.shape
    attended = attention_mask.bool()
    torch.testing.assert_close(split[attended], whole[attended], rtol=1e-4, atol=1e-5)
    # Padded positions cut off a part are zeros, not states computed from padding.
    assert (split[~attended] == 0).all(dim=-1).any() and not (whole[~attended] == 0).all(dim=-1).any()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-3, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def test_bucketed_encoder_trims_a_batch_padded_beyond_its_longest_row():
    encoder = BertModel(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), add_pooling_layer=False)
    input_ids, attention_mask = padded_batch(lengths=[10, 11, 12, 12], width=40)
    widths, handle = record_widths(encoder)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    out = run_encoder_in_length_buckets(encoder, inputs, 4).last_hidden_state
    handle.remove()
    assert widths == [12] and out.shape[1] == 40
    torch.testing.assert_close(out[:, :12], encoder(**inputs).last_hidden_state[:, :12], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["eval-mode", "per-layer-outputs"])
def test_one_padded_call_in_eval_mode_and_for_per_layer_outputs(case):
    encoder = BertModel(tiny_bert_config(), add_pooling_layer=False).train(case != "eval-mode")
    input_ids, attention_mask = padded_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if case == "per-layer-outputs":
        inputs["output_hidden_states"] = True
    widths, handle = record_widths(encoder)
    out = run_encoder_in_length_buckets(encoder, inputs, 4)
    handle.remove()
    assert widths == [WIDTH] and out.last_hidden_state.shape == (len(LENGTHS), WIDTH, 32)


def test_eval_mode_runs_in_parts_only_inside_padding_free_in_eval():
    encoder = BertModel(tiny_bert_config(), add_pooling_layer=False).eval()
    input_ids, attention_mask = padded_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    reference = encoder(**inputs).last_hidden_state
    widths, handle = record_widths(encoder)
    with padding_free_in_eval():
        out = run_encoder_in_length_buckets(encoder, inputs, 4).last_hidden_state
    inside = list(widths)
    run_encoder_in_length_buckets(encoder, inputs, 4)
    handle.remove()
    assert len(inside) > 1 and max(inside) < WIDTH and widths[len(inside):] == [WIDTH]
    real = attention_mask.bool()
    torch.testing.assert_close(out[real], reference[real], rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_keeps_one_call():
    encoder = BertModel(tiny_bert_config(), add_pooling_layer=False).train()
    enable = getattr(encoder, "activation_checkpointing_enable", None) or encoder.gradient_checkpointing_enable
    enable()
    calls = []
    handle = encoder.register_forward_hook(lambda *args: calls.append(1))
    input_ids, attention_mask = padded_batch()
    run_encoder_in_length_buckets(encoder, {"input_ids": input_ids, "attention_mask": attention_mask}, 4)
    handle.remove()
    assert calls == [1]


@pytest.mark.parametrize("sharing", ["hard", "shared_private"])
def test_model_loss_and_gradients_do_not_depend_on_the_buckets(sharing):
    """A mixed batch of sentence, token and pair-regression rows through `MultiTaskModel`, with the default buckets and
    with whole batches: the same loss and gradients (dropout off, so both see the same computation)."""
    encoder_config = tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    input_ids, attention_mask, task_ids, labels = mixed_batch()
    results = {}
    for buckets in (1, 4):
        torch.manual_seed(0)
        config = MultiTaskConfig(encoder=encoder_config, tasks=TASKS, classifier_dropout=0.0, sharing=sharing,
                                 encoder_packing=False, encoder_length_buckets=buckets)
        model = MultiTaskModel(config).train()
        out = model(input_ids=input_ids, attention_mask=attention_mask, task_ids=task_ids, labels=labels)
        out.loss.backward()
        results[buckets] = out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(results[4][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert results[4][1].keys() == results[1][1].keys()
    for name, grad in results[1][1].items():
        torch.testing.assert_close(results[4][1][name], grad, rtol=1e-3, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4"])
def test_bad_bucket_count_is_refused_with_the_value(value):
    with pytest.raises(ValueError, match=rf"encoder_length_buckets must be an integer >= 1.*{value!r}"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS, encoder_length_buckets=value)


def test_bucket_count_is_saved_with_the_model(tmp_path):
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS, encoder_length_buckets=2))
    model.save_pretrained(tmp_path)
    assert MultiTaskModel.from_pretrained(tmp_path).config.encoder_length_buckets == 2
