"""Shared-private sharing: private encoders, the orthogonality loss, and the trainer's adversarial + orthogonality terms."""

import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.sharing.shared_private import orthogonality_loss

from .conftest import tiny_bert_config
from .test_sharing_schemes import MIXABLE, mixed_batch
from .test_trainer import data, make_model, make_trainer  # noqa: F401  (fixture)


def test_heads_read_shared_and_private_features():
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="shared_private"))
    assert model.heads["sst2"].dense.in_features == 32 + 64
    assert model.heads["ner"].classifier.in_features == 32 + 64
    assert set(model.sharing.private) == set(model.config.task_names)
    input_ids, mask, task_ids = mixed_batch()
    encoded = model.eval().encode(task_ids, {"input_ids": input_ids, "attention_mask": mask})
    assert encoded.hidden_states.shape == (8, 9, 96)
    torch.testing.assert_close(encoded.hidden_states[..., :32], encoded.shared_hidden_states)
    assert encoded.auxiliary_losses is None  # the orthogonality loss is a training loss


def test_private_parts_are_small_with_the_stated_init():
    config = MultiTaskConfig(encoder=tiny_bert_config(hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                                                      max_position_embeddings=512), tasks=MIXABLE[:1], sharing="shared_private")
    private = MultiTaskModel(config).sharing.private["sst2"]
    assert sum(p.numel() for p in private.parameters()) < 120_000  # about 0.1M beside a 384-wide backbone
    assert private.projection.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert private.position_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_orthogonality_loss_is_zero_for_orthogonal_features_and_positive_otherwise():
    # Liu et al.'s ||S^T P||_F^2 vanishes when every shared feature (a column over the rows) is orthogonal to every
    # private one. Rows are L2-normalised first, so only directions matter.
    shared = torch.zeros(2, 3, 6)
    shared[:, :, 0] = 1.0  # both rows: shared feature 0 -> column [1, 1]
    private = torch.zeros(2, 3, 5)
    private[0, :, 0], private[1, :, 0] = 2.0, -2.0  # private feature 0 -> column [1, -1]
    assert orthogonality_loss(shared, private, None, "mean").item() == 0.0
    aligned = torch.zeros(2, 3, 5)
    aligned[:, :, 0] = 3.0  # column [1, 1]: (S^T P)[0, 0] = 2 -> 4
    assert orthogonality_loss(shared, aligned, None, "mean").item() == pytest.approx(4.0)


def test_training_mode_returns_the_orthogonality_loss_and_it_reaches_the_private_encoder():
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="shared_private")).train()
    input_ids, mask, task_ids = mixed_batch()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    loss = out.auxiliary_losses["orthogonality"]
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert model.sharing.private["sst2"].projection.weight.grad.abs().sum() > 0
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_trainer_combines_task_adversarial_and_orthogonality_losses(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(sharing="shared_private", adversarial=True, sharing_kwargs={"private_hidden_size": 16, "private_heads": 2})
    trainer = make_trainer(
        tmp_path, tokenizer, data, model=model, orthogonality_weight=0.1, adversarial_weight=0.05, batching="mixed"
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss_orthogonality" in entry]
    assert logged and all(entry["loss_orthogonality"] > 0 and "loss_adversarial" in entry for entry in logged)
    metrics = trainer.evaluate()
    assert "eval_sentiment_accuracy" in metrics


def test_orthogonality_weight_needs_shared_private(tmp_path, tokenizer, data):  # noqa: F811
    with pytest.raises(ValueError, match="orthogonality_weight > 0 needs a shared-private model"):
        make_trainer(tmp_path, tokenizer, data, model=make_model(), orthogonality_weight=0.1)


def test_private_encoders_on_a_backbone_without_a_position_limit():
    """XLNet reports max_position_embeddings=-1 (relative positions, no limit): the private encoders take 512
    positions instead of failing to build an embedding of -1 rows."""
    from transformers import XLNetConfig

    encoder = XLNetConfig(d_model=32, n_layer=2, n_head=2, d_inner=37, vocab_size=99)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=[{"name": "a", "type": "regression"}],
                                           sharing="shared_private"))
    ids = torch.randint(3, 99, (2, 7))
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids), task="a").logits.shape == (2,)
    assert model.sharing.private["a"].position_embeddings.num_embeddings == 512
