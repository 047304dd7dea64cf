"""benchmarks/peer_tasknet.py, the pure parts: label mapping, first-sub-word word alignment, metrics, per-seed
records -> peer.json, the Markdown table, and the reuse of finished seeds. tasknet itself is not installed here (it
lives in its own virtualenv), so nothing trains; the tiny rows are built inline."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "peer_tasknet.py"


def _load():
    spec = importlib.util.spec_from_file_location("peer_tasknet_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peer = _load()


def _record(seed, scores, seconds, budget=None):
    return {
        "seed": seed, "peer": "tasknet", "peer_version": "1.60", "backbone": "all-MiniLM-L6-v2",
        "budget": dict(budget or peer.DEFAULT_BUDGET), "subset": {"max_train_rows": None, "max_eval_rows": None},
        "tasks": {name: {"metric": peer.TASKS[name][2], "score": score,
                         **({"f1_scored_words_only": score + 0.01, "f1_tasknet_subword": score - 0.1}
                            if peer.TASKS[name][1] == "token_classification" else {})}
                  for name, score in scores.items()},
        "train_seconds": seconds, "steps": 1250,
    }


SCORES_1 = {"sst2": 0.80, "ner": 0.60, "intent": 0.90, "slots": 0.70, "stsb": 0.50}
SCORES_2 = {"sst2": 0.90, "ner": 0.64, "intent": 0.80, "slots": 0.74, "stsb": 0.70}


def test_module_imports_neither_tasknet_nor_torch():
    code = (f"import importlib.util, sys; s = importlib.util.spec_from_file_location('p', {str(SCRIPT)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(sorted(k for k in ('tasknet', 'torch', 'transformers') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------ labels


def test_label_sets_are_the_sorted_union_of_both_splits_with_O_first():
    splits = {"train": [{"tokens": ["a", "b"], "tags": ["B-x", "O"]}],
              "validation": [{"tokens": ["c", "d", "e"], "tags": ["I-x", "B-a", "O"]}]}
    task = peer.build_task("ner", splits)
    assert task["labels"] == ["O", "B-a", "B-x", "I-x"]
    assert task["train"][0]["tags"] == [2, 0]
    assert task["validation"][0]["tags"] == [3, 1, 0]

    sst = peer.build_task("sst2", {"train": [{"text": "good", "label": "positive"}],
                                   "validation": [{"text": "bad", "label": "negative"}]})
    assert sst["labels"] == ["negative", "positive"]  # "negative" only occurs in validation
    assert [r["label"] for r in sst["train"] + sst["validation"]] == [1, 0]

    intent = peer.build_task("intent", {"train": [{"tokens": ["fly", "to", "boston"], "tags": ["O"] * 3,
                                                   "intent": "flight"}],
                                        "validation": [{"tokens": ["fares"], "tags": ["O"], "intent": "airfare"}]})
    assert intent["train"][0] == {"text": "fly to boston", "label": 1}
    assert intent["labels"] == ["airfare", "flight"]

    stsb = peer.build_task("stsb", {"train": [{"text": "a", "text_pair": "b", "label": 3}], "validation": []})
    assert stsb["train"][0]["label"] == 3.0 and stsb["labels"] == []


def test_mismatched_words_and_tags_are_refused():
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        peer.build_task("slots", {"train": [{"tokens": ["a", "b"], "tags": ["O"]}], "validation": []})


# ------------------------------------------------------------------------------------------ word alignment


def test_word_prediction_is_taken_at_the_first_sub_word(tokenizer):
    words = ["Kathy", "Etchingham", "lived", "here"]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=64)
    word_ids = encoded.word_ids()
    positions = [p for p, w in enumerate(word_ids) if w == 1]
    assert len(positions) >= 2, "the test needs a word split into several sub-words"
    names = ["O", "B-PER", "I-PER"]

    # B-PER only on the first piece of "Etchingham": the word is B-PER
    predictions = [0] * len(word_ids)
    predictions[positions[0]] = 1
    assert peer.word_level_tags(word_ids, predictions, len(words), names) == ["O", "B-PER", "O", "O"]

    # B-PER only on the later pieces: the word is O (the later pieces are never read)
    predictions = [0] * len(word_ids)
    for p in positions[1:]:
        predictions[p] = 1
    assert peer.word_level_tags(word_ids, predictions, len(words), names) == ["O", "O", "O", "O"]

    # every position predicts its own index: each word reports exactly its first token
    labels = [f"T{i}" for i in range(len(word_ids))]
    tags = peer.word_level_tags(word_ids, list(range(len(word_ids))), len(words), labels)
    assert tags[1] == f"T{positions[0]}"
    assert tags == [f"T{word_ids.index(w)}" for w in range(len(words))]


def test_words_cut_by_truncation_are_predicted_O(tokenizer):
    words = ["Kathy", "Etchingham", "lived", "in", "Johannesburg"]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=6)
    word_ids = encoded.word_ids()  # [CLS] kathy etc ##hing ##ham [SEP]
    assert peer.words_covered(word_ids) == 2
    predictions = [1] * len(word_ids)  # B-LOC everywhere the model saw
    tags = peer.word_level_tags(word_ids, predictions, len(words), ["O", "B-LOC"])
    assert tags == ["B-LOC", "B-LOC", "O", "O", "O"]


# ------------------------------------------------------------------------------------------ metrics


def test_seqeval_entity_f1_on_a_hand_made_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    assert peer.seqeval_f1(gold, gold) == 1.0
    # missing LOC: 2 of 3 entities found, none wrong -> P 1, R 2/3, F1 0.8
    assert peer.seqeval_f1(gold, [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]) == pytest.approx(0.8)
    # PER cut short is a wrong entity: 1 right of 2 predicted, 3 gold -> P 1/2, R 1/3, F1 0.4
    assert peer.seqeval_f1(gold, [["B-PER", "O", "O", "O"], ["B-ORG", "O"]]) == pytest.approx(0.4)
    assert peer.seqeval_f1(gold, [["O"] * 4, ["O"] * 2]) == 0.0
    # default (conlleval) mode, as hf_mtl: an entity opened by I- counts; strict IOB2 mode would score this 0
    assert peer.seqeval_f1([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]) == 1.0


def test_word_level_scoring_differs_from_tasknets_sub_word_scoring(tokenizer):
    words = ["Kathy", "Etchingham", "lived"]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=64)
    word_ids = encoded.word_ids()
    names = ["O", "B-PER", "I-PER"]
    row = {"tokens": words, "tags": [0, 1, 0]}  # "Etchingham" is a one-word PER entity
    # the model says B-PER, I-PER, I-PER over the pieces of "Etchingham": right for a word-level scorer
    predictions = [0] * len(word_ids)
    pieces = [p for p, w in enumerate(word_ids) if w == 1]
    predictions[pieces[0]] = 1
    for p in pieces[1:]:
        predictions[p] = 2
    scores = peer.score_token_task([row], [word_ids], [predictions], names)
    assert scores["f1"] == 1.0
    assert scores["f1_scored_words_only"] == 1.0
    # tasknet copies B-PER onto every piece (three gold "entities"), so the same prediction scores 0 there
    assert scores["f1_tasknet_subword"] == 0.0


def test_truncated_gold_entities_count_against_the_reported_f1_only(tokenizer):
    words = ["Kathy", "Etchingham", "lived", "in", "Johannesburg"]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=6)
    word_ids = encoded.word_ids()
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    row = {"tokens": words, "tags": [1, 2, 0, 0, 3]}
    predictions = [0] * len(word_ids)
    predictions[word_ids.index(0)], predictions[word_ids.index(1)] = 1, 2
    scores = peer.score_token_task([row], [word_ids], [predictions], names)
    assert scores["f1"] == pytest.approx(2 / 3)  # the cut LOC is a miss: P 1, R 1/2
    assert scores["f1_scored_words_only"] == 1.0  # hf_mtl's own evaluation never sees the cut words


def test_accuracy_and_pearson():
    assert peer.accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    with pytest.raises(ValueError):
        peer.accuracy([1], [1, 0])
    assert peer.pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(4.5 / math.sqrt(2 * 10.1666667), abs=1e-6)
    assert peer.pearson([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx(-1.0)
    assert peer.pearson([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0  # constant predictions, as in hf_mtl


# ------------------------------------------------------------------------------------------ aggregate and report


def test_aggregate_format_mean_and_sample_std():
    result = peer.aggregate([_record(1, SCORES_1, 100.5), _record(2, SCORES_2, 110.0)], command="python x.py")
    assert set(result) == {"peer", "peer_version", "backbone", "budget", "seeds", "tasks", "train_seconds", "command"}
    assert (result["peer"], result["peer_version"], result["backbone"]) == ("tasknet", "1.60", "all-MiniLM-L6-v2")
    assert result["budget"] == {"epochs": 2, "batch_size": 16, "learning_rate": 5e-05, "max_seq_length": 64,
                                "warmup_ratio": 0.1}
    assert result["seeds"] == [1, 2]
    assert list(result["tasks"]) == ["sst2", "ner", "intent", "slots", "stsb"]
    assert result["train_seconds"] == {"1": 100.5, "2": 110.0}
    assert result["command"] == "python x.py"
    sst2 = result["tasks"]["sst2"]
    assert sst2["metric"] == "accuracy" and sst2["scores"] == [0.8, 0.9]
    assert sst2["mean"] == pytest.approx(0.85)
    assert sst2["std"] == pytest.approx(math.sqrt(0.005))  # sample std (n - 1), not population (0.05)
    stsb = result["tasks"]["stsb"]
    assert stsb["metric"] == "pearson" and stsb["mean"] == pytest.approx(0.6) and stsb["std"] == pytest.approx(
        math.sqrt(0.02))
    ner = result["tasks"]["ner"]
    # the main token score is hf_mtl's rule (truncated words left out); the stricter one is kept beside it
    assert ner["metric"] == "f1" and ner["mean"] == pytest.approx(0.63)
    assert ner["scores_scored_words_only"] == pytest.approx([0.61, 0.65]) == ner["scores"]
    assert ner["scores_truncated_words_as_O"] == pytest.approx([0.6, 0.64])
    assert ner["tasknet_subword_scores"] == pytest.approx([0.5, 0.54])
    json.dumps(result)  # serialisable

    single = peer.aggregate([_record(3, SCORES_1, 90.0)])
    assert single["seeds"] == [3] and single["tasks"]["intent"]["std"] is None
    assert single["tasks"]["intent"]["mean"] == 0.9


def test_aggregate_refuses_seeds_of_different_budgets():
    other = dict(peer.DEFAULT_BUDGET, epochs=1)
    with pytest.raises(ValueError, match="budget"):
        peer.aggregate([_record(1, SCORES_1, 1.0), _record(2, SCORES_2, 1.0, budget=other)])


def test_markdown_has_one_row_per_task():
    result = peer.aggregate([_record(1, SCORES_1, 100.0), _record(2, SCORES_2, 110.0)])
    text = peer.render_markdown(result)
    assert "| Task | Metric | tasknet mean ± std | per-seed scores |" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`sst2`", "`ner`", "`intent`", "`slots`", "`stsb`"]
    assert "| `sst2` | accuracy | 0.8500 ± 0.0707 | 1: 0.8000, 2: 0.9000 |" in rows
    assert "| `stsb` | pearson | 0.6000 ± 0.1414 | 1: 0.5000, 2: 0.7000 |" in rows
    single = peer.render_markdown(peer.aggregate([_record(1, SCORES_1, 1.0)]))
    assert "| `ner` | f1 | 0.6100 ± n/a | 1: 0.6100 |" in single


# ------------------------------------------------------------------------------------------ command line


def _tiny_data(root: Path) -> Path:
    rows = {
        "sst2": [{"text": "good film", "label": "positive"}, {"text": "dull", "label": "negative"}],
        "conll2003": [{"tokens": ["Kathy", "lived"], "tags": ["B-PER", "O"]}],
        "atis": [{"tokens": ["to", "boston"], "tags": ["O", "B-toloc"], "intent": "flight"}],
        "stsb": [{"text": "a", "text_pair": "b", "label": 1.5}, {"text": "c", "text_pair": "c", "label": 5.0}],
    }
    for folder, items in rows.items():
        (root / folder).mkdir(parents=True)
        for split in ("train", "validation"):
            (root / folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return root


def test_finished_seeds_are_reused_and_aggregated(tmp_path):
    data, out = _tiny_data(tmp_path / "data"), tmp_path / "out"
    out.mkdir()
    (out / "seed1.json").write_text(json.dumps(_record(1, SCORES_1, 100.0)))
    (out / "seed2.json").write_text(json.dumps(_record(2, SCORES_2, 110.0)))
    assert peer.main(["--data", str(data), "--seeds", "1,2", "--output-dir", str(out)]) == 0  # no training
    result = json.loads((out / "peer.json").read_text())
    assert result["seeds"] == [1, 2] and result["tasks"]["sst2"]["mean"] == pytest.approx(0.85)
    assert "| `slots` | f1 |" in (out / "peer.md").read_text()


@pytest.mark.parametrize("change", [["--epochs", "1"], ["--tasks", "sst2,intent,slots,stsb"]], ids=["budget", "part"])
def test_a_finished_seed_of_another_budget_or_part_of_the_suite_is_not_reused(tmp_path, change):
    data, out = _tiny_data(tmp_path / "data"), tmp_path / "out"
    out.mkdir()
    (out / "seed1.json").write_text(json.dumps(_record(1, SCORES_1, 100.0)))
    with pytest.raises(SystemExit, match="--force"):
        peer.main(["--data", str(data), "--seeds", "1", *change, "--output-dir", str(out)])
    assert not (out / "peer.json").exists()


def test_suite_loading_keeps_label_sets_of_the_full_files(tmp_path):
    data = _tiny_data(tmp_path / "data")
    suite = peer.load_suite(data, max_train_rows=1, max_eval_rows=1)
    assert list(suite) == list(peer.TASK_ORDER)
    assert len(suite["sst2"]["train"]) == 1 and suite["sst2"]["labels"] == ["negative", "positive"]
    assert suite["slots"]["labels"] == ["O", "B-toloc"] and suite["ner"]["labels"] == ["O", "B-PER"]
    assert suite["intent"]["validation"] == [{"text": "to boston", "label": 0}]


def test_a_part_of_the_suite_loads_only_its_tasks_in_suite_order(tmp_path):
    data = _tiny_data(tmp_path / "data")
    suite = peer.load_suite(data, tasks=["stsb", "sst2", "slots"])
    assert list(suite) == ["sst2", "slots", "stsb"]
    args = peer.parse_args(["--data", str(data), "--tasks", "stsb,sst2,intent,slots"])
    assert args.task_list == ["sst2", "intent", "slots", "stsb"]
    assert peer.subset_from_args(args)["tasks"] == ["sst2", "intent", "slots", "stsb"]
    assert "tasks" not in peer.subset_from_args(peer.parse_args(["--data", str(data)]))  # old records still match


@pytest.mark.parametrize("tasks", ["sst2,pos", ","])
def test_unknown_or_no_tasks_are_refused_with_the_choices(tmp_path, capsys, tasks):
    with pytest.raises(SystemExit):
        peer.parse_args(["--data", str(tmp_path), "--tasks", tasks])
    assert "choose from sst2, ner, intent, slots, stsb" in capsys.readouterr().err
