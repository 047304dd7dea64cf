"""Offline augmentation: label preservation, alignment, reproducibility (property-based), `augment_dataset`, errors."""

import os
import random
import subprocess
import sys
from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hf_mtl import TaskSpec
from hf_mtl.data.augmentation import AUGMENTATIONS, AugmentationConfig, AugmentationError, augment_dataset
from hf_mtl.data.augmentation.bio import is_valid_bio, mention_tags, segments


SEQUENCE_METHODS = ["random_deletion", "random_insertion", "random_swap"]
TOKEN_METHODS = ["label_wise_token_replacement", "mention_replacement", "shuffle_within_segments"]
WORDS = ["the", "cat", "sat", "on", "a", "mat", "john", "paris", "big", "red", "runs", "fast", "x", "y"]
TYPES = ["PER", "LOC", "ORG"]
NER_LABELS = ["O"] + [f"{p}-{t}" for t in TYPES for p in "BI"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DATASET_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TASKS = {
    "sequence_classification": TaskSpec(name="sst2", type="sequence_classification", labels=["neg", "pos"]),
    "pair": TaskSpec(
        name="nli", type="sequence_classification", labels=["e", "n", "c"], text_columns=["premise", "hypothesis"]
    ),
    "multi_label_classification": TaskSpec(name="topics", type="multi_label_classification", labels=["a", "b", "c"]),
    "regression": TaskSpec(name="sts", type="regression"),
}
NER = TaskSpec(name="ner", type="token_classification", labels=NER_LABELS)

word_lists = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12)
seeds = st.integers(0, 2**32)


@st.composite
def bio_sentences(draw):
    """Tokens with valid BIO tags: O-runs and mentions (adjacent same-type mentions included)."""
    tokens, tags = [], []
    for entity_type, length in draw(
        st.lists(st.tuples(st.sampled_from([None, *TYPES]), st.integers(1, 3)), min_size=1, max_size=6)
    ):
        tokens += draw(st.lists(st.sampled_from(WORDS), min_size=length, max_size=length))
        tags += ["O"] * length if entity_type is None else mention_tags(entity_type, length)
    return tokens, tags


def mention_types(tags):
    return [seg.entity_type for seg in segments(tags) if seg.entity_type is not None]


def run_method(name, corpus, seed, **kwargs):
    """Fit `name` on the corpus and augment every entry with one seeded stream."""
    method = AUGMENTATIONS.get(name)(**kwargs)
    method.fit(corpus)
    rng = random.Random(seed)
    if name in SEQUENCE_METHODS:
        return [method.augment_words(words, rng) for words in corpus]
    return [method.augment_tokens(tokens, tags, rng) for tokens, tags in corpus]


# --- method-level properties --------------------------------------------------------------------------------------


@SETTINGS
@given(corpus=st.lists(word_lists, min_size=1, max_size=6), seed=seeds, name=st.sampled_from(SEQUENCE_METHODS))
def test_sequence_methods_edit_words_as_specified_and_never_empty(corpus, seed, name):
    outputs = run_method(name, corpus, seed)
    assert outputs == run_method(name, corpus, seed)  # same seed, same edits
    vocabulary = {word for words in corpus for word in words}
    for words, out in zip(corpus, outputs):
        assert out and all(out)
        if name == "random_swap":
            assert Counter(out) == Counter(words)
        elif name == "random_deletion":
            remaining = iter(words)
            assert all(word in remaining for word in out)  # an ordered subsequence of the input
        else:
            assert len(out) == len(words) + max(1, int(0.1 * len(words)))
            remaining = iter(out)
            assert all(word in remaining for word in words)  # the original words, in order, plus insertions
            assert set(out) <= vocabulary  # in-vocabulary words only


@SETTINGS
@given(corpus=st.lists(bio_sentences(), min_size=1, max_size=6), seed=seeds, name=st.sampled_from(TOKEN_METHODS))
def test_token_methods_keep_tags_aligned_valid_and_typed(corpus, seed, name):
    outputs = run_method(name, corpus, seed, p=0.5)
    assert outputs == run_method(name, corpus, seed, p=0.5)
    tokens_by_tag = {}
    mentions_by_type = {}
    for tokens, tags in corpus:
        for token, tag in zip(tokens, tags):
            tokens_by_tag.setdefault(tag, set()).add(token)
        for seg in segments(tags):
            if seg.entity_type:
                mentions_by_type.setdefault(seg.entity_type, set()).add(tuple(tokens[seg.start : seg.end]))
    for (tokens, tags), (out_tokens, out_tags) in zip(corpus, outputs):
        assert out_tokens and len(out_tokens) == len(out_tags)
        assert is_valid_bio(out_tags)
        assert mention_types(out_tags) == mention_types(tags)  # same entity types, same order
        if name == "mention_replacement":
            in_segs, out_segs = segments(tags), segments(out_tags)
            assert len(in_segs) == len(out_segs)
            for a, b in zip(in_segs, out_segs):
                assert a.entity_type == b.entity_type
                piece = tuple(out_tokens[b.start : b.end])
                if a.entity_type is None:
                    assert piece == tuple(tokens[a.start : a.end])  # O tokens untouched
                else:
                    assert piece in mentions_by_type[a.entity_type]  # a training mention of the same type
        else:
            assert out_tags == tags
            assert Counter(t[2:] for t in out_tags if t != "O") == Counter(t[2:] for t in tags if t != "O")
            if name == "label_wise_token_replacement":
                assert all(token in tokens_by_tag[tag] for token, tag in zip(out_tokens, out_tags))
            else:
                for seg in segments(tags):
                    assert sorted(out_tokens[seg.start : seg.end]) == sorted(tokens[seg.start : seg.end])


def _can_change(name, corpus):
    """Whether some edit of `name` can give a different output on this corpus (else seeds cannot differ)."""
    if name == "random_deletion":
        return any(len(set(words)) > 1 for words in corpus)  # deleting one of identical words changes nothing
    if name == "random_swap":
        return any(len(set(words)) > 1 for words in corpus)
    if name == "random_insertion":
        return len({word for words in corpus for word in words}) > 1
    pools = {}
    for tokens, tags in corpus:
        if name == "label_wise_token_replacement":
            for token, tag in zip(tokens, tags):
                pools.setdefault(tag, set()).add(token)
        for seg in segments(tags):
            piece = tuple(tokens[seg.start : seg.end])
            if name == "shuffle_within_segments" and len(set(piece)) > 1:
                return True
            if name == "mention_replacement" and seg.entity_type:
                pools.setdefault(seg.entity_type, set()).add(piece)
    return any(len(pool) > 1 for pool in pools.values())


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(SEQUENCE_METHODS + TOKEN_METHODS),
    seed=seeds,
)
def test_different_seeds_generally_give_different_edits(data, name, seed):
    sentences = bio_sentences() if name in TOKEN_METHODS else word_lists
    corpus = data.draw(st.lists(sentences, min_size=2, max_size=6))
    assume(_can_change(name, corpus))
    kwargs = {"alpha": 0.5} if name in ("random_swap", "random_insertion") else {"p": 0.9}
    runs = {repr(run_method(name, corpus, seed + offset, **kwargs)) for offset in range(10)}
    assert len(runs) > 1


# --- augment_dataset ----------------------------------------------------------------------------------------------


def sequence_dataset(kind, texts, rng):
    n = len(texts)
    columns = {"id": list(range(n))}
    if kind == "pair":
        columns |= {"premise": [" ".join(t) for t in texts], "hypothesis": [" ".join(reversed(t)) for t in texts]}
    else:
        columns["text"] = [" ".join(t) for t in texts]
    if kind == "multi_label_classification":
        columns["label"] = [[float(rng.random() < 0.5) for _ in range(3)] for _ in range(n)]
    elif kind == "regression":
        columns["label"] = [rng.uniform(0, 5) for _ in range(n)]
    else:
        columns["label"] = [rng.randrange(3 if kind == "pair" else 2) for _ in range(n)]
    return Dataset.from_dict(columns)


def ner_dataset(sentences, as_ids):
    tags = [[NER_LABELS.index(t) for t in s[1]] if as_ids else s[1] for s in sentences]
    tag_feature = ClassLabel(names=NER_LABELS) if as_ids else Value("string")
    features = Features({"id": Value("int64"), "tokens": List(Value("string")), "tags": List(tag_feature)})
    return Dataset.from_dict(
        {"id": list(range(len(sentences))), "tokens": [s[0] for s in sentences], "tags": tags}, features=features
    )


def check_shape(original, augmented, ratio):
    n = len(original)
    assert len(augmented) == n + int(ratio * n + 0.5)
    assert augmented.features == original.features
    assert augmented.select(range(n)).to_dict() == original.to_dict()  # originals untouched, first
    assert len(concatenate_datasets([original, augmented])) == n + len(augmented)
    return [augmented[i] for i in range(n, len(augmented))]


@DATASET_SETTINGS
@given(
    kind=st.sampled_from(sorted(TASKS)),
    texts=st.lists(word_lists, min_size=1, max_size=12),
    ratio=st.floats(0, 1),
    seed=seeds,
)
def test_augment_dataset_sequence_level_keeps_labels(kind, texts, ratio, seed):
    task = TASKS[kind]
    dataset = sequence_dataset(kind, texts, random.Random(seed))
    augmented = augment_dataset(dataset, task, ratio, seed=seed)
    new_rows = check_shape(dataset, augmented, ratio)
    for row in new_rows:
        source = dataset[row["id"]]
        assert row["label"] == source["label"]
        for column in task.text_columns or ["text"]:
            assert row[column].strip()
    assert augment_dataset(dataset, task, ratio, seed=seed).to_dict() == augmented.to_dict()


@DATASET_SETTINGS
@given(
    sentences=st.lists(bio_sentences(), min_size=1, max_size=12),
    as_ids=st.booleans(),
    ratio=st.floats(0, 1),
    seed=seeds,
)
def test_augment_dataset_token_level_keeps_tags_aligned(sentences, as_ids, ratio, seed):
    dataset = ner_dataset(sentences, as_ids)
    augmented = augment_dataset(dataset, NER, ratio, seed=seed)
    for row in check_shape(dataset, augmented, ratio):
        tags = [NER_LABELS[t] for t in row["tags"]] if as_ids else row["tags"]
        assert row["tokens"] and len(row["tokens"]) == len(tags)
        assert is_valid_bio(tags)
        assert mention_types(tags) == mention_types(sentences[row["id"]][1])
    assert augment_dataset(dataset, NER, ratio, seed=seed).to_dict() == augmented.to_dict()


def test_ratio_counts_sources_and_method_cycling():
    rng = random.Random(0)
    dataset = sequence_dataset("sequence_classification", [rng.sample(WORDS, 6) for _ in range(200)], rng)
    augmented = augment_dataset(dataset, TASKS["sequence_classification"], 0.5, seed=1)
    assert len(augmented) == 300
    ids = augmented["id"][200:]
    assert len(set(ids)) == 100  # sources drawn without replacement
    assert max(ids) >= 150 and min(ids) < 50  # ... from the whole split, not its first rows
    assert set(augment_dataset(dataset, TASKS["sequence_classification"], 0.5, seed=2)["id"][200:]) != set(ids)
    assert len(augment_dataset(dataset, TASKS["sequence_classification"], 1.0, seed=1)) == 400
    assert augment_dataset(dataset, TASKS["sequence_classification"], 0.0) is dataset
    # one method per new row, cycled: with two methods each one edits every other row
    swapped = augment_dataset(
        dataset, TASKS["sequence_classification"], 0.1, methods=["random_swap", "random_insertion"]
    )
    lengths = [len(text.split()) for text in swapped["text"][200:]]
    assert lengths == [6, 7] * 10


def test_different_seeds_change_the_same_rows_differently():
    rng = random.Random(0)
    dataset = sequence_dataset("sequence_classification", [rng.sample(WORDS, 8) for _ in range(20)], rng)

    def by_id(seed):
        rows = augment_dataset(dataset, TASKS["sequence_classification"], 1.0, seed=seed).select(range(20, 40))
        return sorted(zip(rows["id"], rows["text"]))

    assert by_id(0) == by_id(0)
    assert by_id(0) != by_id(1)


def test_empty_rows_are_never_sources_and_format_is_kept():
    dataset = Dataset.from_dict({"text": ["", "one two three", "   "], "label": [0, 1, 0]}).with_format("numpy")
    augmented = augment_dataset(dataset, TASKS["sequence_classification"], 1.0, methods=["random_deletion"], p=0.9)
    assert augmented.format["type"] == "numpy"
    assert all(text.strip() for text in augmented["text"][3:])
    assert list(augmented["label"][3:]) == [1, 1, 1]


def _reproducibility_probe() -> str:
    """Augment a token and a sentence dataset with rich sampling pools; run here and in a subprocess."""
    r = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    tags = [["B-PER", "I-PER", "O", "B-PER", "O"][: r.randint(1, 5)] for _ in range(30)]
    tokens = [[r.choice(words) for _ in row] for row in tags]
    ner = augment_dataset(Dataset.from_dict({"tokens": tokens, "tags": tags}), NER, 1.0, seed=7, p=0.9)
    texts = [" ".join(r.sample(words, 8)) for _ in range(30)]
    sts = Dataset.from_dict({"text": texts, "label": [0.5] * 30})
    inserted = augment_dataset(
        sts, TASKS["regression"], 1.0, seed=7, methods=["random_insertion"], distribution="uniform"
    )
    return repr((ner.to_dict(), inserted.to_dict()))


def test_same_seed_same_output_in_another_process():
    """Sampling pools must not depend on set/hash order (PYTHONHASHSEED differs between processes)."""
    other_seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)  # differs from this process's hash seed
    there = subprocess.run(
        [sys.executable, "-c", "from tests.test_augmentation import _reproducibility_probe as p; print(p())"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "PYTHONHASHSEED": other_seed},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert there.returncode == 0, there.stderr[-2000:]
    assert there.stdout.strip() == _reproducibility_probe()


# --- errors -------------------------------------------------------------------------------------------------------


def small_text_dataset(**columns):
    return Dataset.from_dict(columns or {"text": ["a b c", "d e f"], "label": [0, 1]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"methods": ["random_swapp"]},
            r"Unknown augmentation 'random_swapp'\. Choose one of: label_wise_token_replacement, .*Did you mean 'random_swap'",
        ),
        (
            {"methods": ["mention_replacement"]},
            r"'mention_replacement' does not support task 'sst2' of type 'sequence_classification'\. Methods for 'sequence_classification': random_deletion, random_insertion, random_swap",
        ),
        ({"methods": []}, "non-empty list of method names"),
        ({"methods": ["random_swap", "random_swap"]}, r"lists \['random_swap'\] more than once"),
        ({"ratio": 1.5}, r"`ratio` must be a number in \[0, 1\].*got 1\.5"),
        ({"ratio": -0.1}, r"got -0\.1"),
        ({"ratio": "0.5"}, r"`ratio` must be a number.*got '0\.5'"),
        ({"ratio": None}, r"`ratio` must be a number.*got None"),
        ({"ratio": True}, r"got True"),
        ({"seed": "1"}, r"`seed` must be an integer, got '1'"),
        (
            {"q": 0.1},
            r"No selected augmentation method accepts \['q'\]\. Hyperparameters by method: random_deletion: p; .*random_swap: alpha, n",
        ),
        ({"p": 2}, r"'random_deletion': `p` must be a probability in \[0, 1\], got 2"),
        ({"n": 0}, r"'random_insertion': `n` must be a positive integer"),
        ({"distribution": "zipf"}, r"unknown `distribution` 'zipf'\. Choose one of: unigram, uniform"),
        ({"random_swap": {"p": 0.1}}, r"Method 'random_swap' has no hyperparameter \['p'\]; it accepts: alpha, n"),
        (
            {"methods": ["random_swap"], "random_deletion": {"p": 0.1}},
            r"given for method 'random_deletion', which is not among the methods used: random_swap",
        ),
    ],
)
def test_bad_arguments_name_the_value_and_the_choices(kwargs, message):
    kwargs = {"ratio": 0.5, **kwargs}
    with pytest.raises(AugmentationError, match=message) as info:
        augment_dataset(small_text_dataset(), TASKS["sequence_classification"], **kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "dataset, task, message",
    [
        (
            small_text_dataset(sentence=["a b"], label=[0]),
            TASKS["sequence_classification"],
            r"Task 'sst2': column 'text' is not in the dataset \(columns present: \['sentence', 'label'\]\)",
        ),
        (
            small_text_dataset(premise=["a b"], label=[0]),
            TASKS["pair"],
            r"column 'hypothesis' is not in the dataset \(columns present: \['premise', 'label'\]\)",
        ),
        (
            small_text_dataset(words=[["a"]], tags=[["O"]]),
            NER,
            r"column 'tokens' is not in the dataset \(columns present: \['words', 'tags'\]\)",
        ),
        (
            small_text_dataset(tokens=[["a"]], ner_tags=[["O"]]),
            NER,
            r"column 'tags' is not in the dataset \(columns present: \['tokens', 'ner_tags'\]\)",
        ),
        (
            small_text_dataset(tokens=[["a"], ["a", "b", "c"]], tags=[["O"], ["O", "O"]]),
            NER,
            r"Row 1: 3 tokens in 'tokens' but 2 tags in 'tags'",
        ),
        (
            small_text_dataset(tokens=[["a"]], tags=[[9]]),
            NER,
            r"Row 0: tag ids \[9\] in 'tags' are outside the labels of task 'ner'",
        ),
        (
            Dataset.from_dict({"text": [], "label": []}),
            TASKS["sequence_classification"],
            "Task 'sst2': the dataset is empty",
        ),
        (
            small_text_dataset(text=["", " "], label=[0, 1]),
            TASKS["sequence_classification"],
            "every row has an empty text",
        ),
        (
            small_text_dataset(text=["a b", None], label=[0, 1]),
            TASKS["sequence_classification"],
            "Row 1: column 'text' must hold a string, got None",
        ),
        (
            DatasetDict(train=small_text_dataset()),
            TASKS["sequence_classification"],
            r"augment the training split: augment_dataset\(ds\['train'\]",
        ),
        (
            small_text_dataset(),
            TaskSpec(name="swag", type="multiple_choice"),
            r"Task 'swag' has type 'multiple_choice', which no augmentation method supports; supported task types: multi_label_classification, regression, sequence_classification, token_classification",
        ),
    ],
)
def test_bad_datasets_name_the_column_row_or_fix(dataset, task, message):
    with pytest.raises(AugmentationError, match=message):
        augment_dataset(dataset, task, 0.5)


def test_mention_methods_need_bio_but_label_wise_replacement_takes_any_scheme():
    dataset = Dataset.from_dict(
        {"id": [0, 1], "tokens": [["Ann", "met", "Bob"], ["Eve"]], "tags": [["S-PER", "O", "S-PER"], ["S-PER"]]}
    )
    for name in ("mention_replacement", "shuffle_within_segments"):
        with pytest.raises(AugmentationError, match=rf"Row 0: tag 'S-PER' is not a BIO tag.*{name!r} needs BIO tags"):
            augment_dataset(dataset, NER, 1.0, methods=[name])
    augmented = augment_dataset(dataset, NER, 1.0, methods=["label_wise_token_replacement"], p=1.0)
    for row in augmented.select(range(2, 4)):
        assert row["tags"] == dataset[row["id"]]["tags"]
        assert all(token in ("Ann", "Bob", "Eve") for token, tag in zip(row["tokens"], row["tags"]) if tag == "S-PER")


def test_mention_replacement_regenerates_bio_for_new_lengths():
    dataset = Dataset.from_dict(
        {
            "id": [0, 1],
            "tokens": [["New", "York", "is", "big"], ["Rome", "too"]],
            "tags": [["B-LOC", "I-LOC", "O", "O"], ["B-LOC", "O"]],
        }
    )
    lengths_changed = False
    for seed in range(5):
        augmented = augment_dataset(dataset, NER, 1.0, methods=["mention_replacement"], p=1.0, seed=seed)
        for row in augmented.select(range(2, 4)):
            source = dataset[row["id"]]
            context = source["tokens"][-source["tags"].count("O") :]
            mention = row["tokens"][: len(row["tokens"]) - len(context)]
            assert mention in (["New", "York"], ["Rome"]) and row["tokens"][len(mention) :] == context
            assert row["tags"] == mention_tags("LOC", len(mention)) + ["O"] * len(context)
            lengths_changed |= len(row["tokens"]) != len(source["tokens"])
    assert lengths_changed


# --- AugmentationConfig -------------------------------------------------------------------------------------------


def test_config_parses_a_recipe_entry_and_applies_it():
    config = AugmentationConfig.from_dict(
        {"ratio": 0.5, "methods": ["random_swap", "random_deletion"], "kwargs": {"p": 0.2}}
    )
    assert config == AugmentationConfig(
        methods=["random_swap", "random_deletion"], ratio=0.5, seed=0, kwargs={"p": 0.2}
    )
    assert AugmentationConfig.from_dict(config.to_dict()) == config
    dataset = small_text_dataset()
    expected = augment_dataset(
        dataset, TASKS["sequence_classification"], 0.5, ["random_swap", "random_deletion"], p=0.2
    )
    assert config.apply(dataset, TASKS["sequence_classification"]).to_dict() == expected.to_dict()
    assert AugmentationConfig.from_dict({"ratio": 1}).methods is None


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"ratio": 2}, r"`ratio` must be a number in \[0, 1\].*got 2"),
        ({"ratio": 0.5, "methods": ["eda"]}, r"Unknown augmentation 'eda'\. Choose one of:"),
        ({"ratio": 0.5, "p": 0.1}, r"Unknown `augment:` keys \['p'\]; known keys: kwargs, methods, ratio, seed"),
        ({"ratio": 0.5, "kwargs": {"alpah": 0.1}}, r"No selected augmentation method accepts \['alpah'\]"),
        ({"ratio": 0.5, "methods": ["random_swap"], "kwargs": {"p": 0.1}}, r"accepts \['p'\].*random_swap: alpha, n"),
        ({"ratio": 0.5, "kwargs": [1]}, r"`kwargs` must be a dict"),
        ("ratio: 0.5", r"An `augment:` entry is a mapping"),
    ],
)
def test_config_rejects_bad_entries(entry, message):
    with pytest.raises(AugmentationError, match=message):
        AugmentationConfig.from_dict(entry)
