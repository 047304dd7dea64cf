import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.utils.fast_dropout import FastDropout, keep_mask

from .conftest import tiny_bert_config


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.05])
def test_fast_dropout_keeps_each_element_with_the_rate_of_nn_dropout_and_scales_like_it(rate):
    torch.manual_seed(0)
    x = torch.ones(1000, 1001, requires_grad=True)  # an odd count: not a multiple of the four draws per word
    out = FastDropout(rate).train()(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(1 - rate, abs=0.002)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - rate)))
    columns = kept.float().mean(dim=0)  # every lane of the 64-bit words is drawn alike
    assert (columns - (1 - rate)).abs().max().item() < 0.06
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # the gradient goes through the same mask and scale


def test_fast_dropout_follows_the_seed_and_is_the_identity_where_nn_dropout_is():
    x = torch.randn(7, 33)
    torch.manual_seed(3)
    first = FastDropout(0.2).train()(x)
    torch.manual_seed(3)
    torch.testing.assert_close(FastDropout(0.2).train()(x), first)
    assert not torch.equal(FastDropout(0.2).train()(x), first)
    torch.testing.assert_close(FastDropout(0.2).eval()(x), x)
    torch.testing.assert_close(FastDropout(0.0).train()(x), x)
    assert keep_mask(torch.Size([2, 3]), 0.5, torch.bfloat16).dtype == torch.bfloat16


def test_lora_adapters_use_fast_dropout_at_their_rate_and_peft_identity_without_dropout():
    tasks = [{"name": "a", "type": "sequence_classification", "labels": ["x", "y"]},
             {"name": "b", "type": "token_classification", "labels": ["O", "B-X"]}]
    for rate, expected in ((0.1, FastDropout), (0.0, torch.nn.Identity)):
        model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=tasks, sharing="lora",
                                               sharing_kwargs={"r": 4, "lora_dropout": rate}))
        layers = [module for module in model.encoder.modules() if hasattr(module, "lora_dropout")]
        assert layers and all(type(layer.lora_dropout[task]) is expected for layer in layers for task in ("a", "b"))
        if rate:
            assert {layer.lora_dropout["a"].p for layer in layers} == {rate}
            model.add_task({"name": "c", "type": "regression"})  # an adapter added later draws the same way
            assert all(type(layer.lora_dropout["c"]) is FastDropout for layer in layers)
