"""Generated multi-task data for the offline demo and the tests (NOT a benchmark: say so wherever it is used).

Five small tasks of different types built from one shared world of templates, so the tasks are related the way
real multi-task suites are (the sentiment words drive both `sentiment` and `rating`; the entity lists drive
`entities` and `topics`) and a model must learn something non-trivial: negation flips sentiment, ratings count
intensifiers, entities need context-free lexical knowledge plus BIO structure, topics are multi-label.

With `held_out_words=True` (what recipes use), the validation rows use held-out words (the last ~30% of each word list: sentiment words, names, places,
organisations, topic phrases) that no training row contains, so a validation score measures generalisation to
unseen words (helped by the pretrained encoder), not memorised templates.

Every example is a deterministic function of the seed.
"""

from __future__ import annotations

import random

from datasets import Dataset, DatasetDict


POSITIVE = ["good", "great", "wonderful", "delightful", "superb", "charming", "moving", "brilliant", "fun", "lovely"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "clumsy", "tedious", "weak", "messy", "bland"]
INTENSIFIERS = ["very", "really", "truly", "extremely"]
SUBJECTS = ["the film", "the story", "the acting", "the soundtrack", "the ending", "the script", "the cast", "the plot"]
PEOPLE = ["Alice Martin", "Bob", "Chen Wei", "Diana Ross", "Omar", "Priya Nair", "Lars Berg", "Maria"]
PLACES = ["Paris", "Lagos", "Tokyo", "New York", "Oslo", "Lima", "Cairo", "Sydney"]
ORGS = ["Acme Corp", "the United Nations", "Globex", "Red Cross", "NASA", "Initech"]
TOPIC_WORDS = {
    "sports": ["the match", "a goal", "the league", "the coach", "the stadium", "the tournament", "the referee",
               "the final"],
    "politics": ["the election", "parliament", "a new law", "the minister", "the vote", "the senate", "the president",
                 "the campaign"],
    "science": ["the experiment", "a telescope", "the lab", "a new vaccine", "the theory", "the physicists",
                "a chemistry study", "the researchers"],
    "arts": ["the museum", "a painting", "the orchestra", "the gallery", "a sculpture", "the opera", "the painter",
             "a concert"],
}
TOPICS = list(TOPIC_WORDS)
ENTITY_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

DEMO_TASKS = [
    {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "rating", "type": "regression", "labels": ["score"]},
    {"name": "entities", "type": "token_classification", "labels": ENTITY_TAGS},
    {"name": "topics", "type": "multi_label_classification", "labels": TOPICS},
    {"name": "paraphrase", "type": "sequence_classification", "labels": ["different", "same"], "text_columns": ["text", "text_pair"]},
]


def _pick(rng: random.Random, words: list, split: str):
    """A word from the split's part of a list: the first ~70% for training, the rest for validation."""
    if split == "all":
        return rng.choice(words)
    cut = max(1, round(len(words) * 0.7))
    return rng.choice(words[:cut] if split == "train" else words[cut:])


def _opinion(rng: random.Random, split: str) -> tuple[str, int, float]:
    """A review clause, its polarity (after negation) and a graded score in [-2, 2]."""
    positive = rng.random() < 0.5
    word = _pick(rng, POSITIVE if positive else NEGATIVE, split)
    intensity = 1.0
    parts = [rng.choice(SUBJECTS), "was"]
    negated = rng.random() < 0.3
    if negated:
        parts.append("not")
    elif rng.random() < 0.4:
        parts.append(rng.choice(INTENSIFIERS))
        intensity = 2.0
    parts.append(word)
    polarity = positive != negated
    score = (1.0 if polarity else -1.0) * (0.5 if negated else intensity)
    return " ".join(parts), int(polarity), score


def _sentiment(rng, split):
    clauses = [_opinion(rng, split) for _ in range(rng.choice([1, 1, 2]))]
    if len(clauses) == 2 and clauses[0][1] != clauses[1][1]:
        # "X but Y": the clause after "but" decides, as in real reviews.
        text = f"{clauses[0][0]} but {clauses[1][0]}"
        return {"text": text, "label": ["negative", "positive"][clauses[1][1]]}
    text = " and ".join(clause[0] for clause in clauses)
    return {"text": text, "label": ["negative", "positive"][clauses[-1][1]]}


def _rating(rng, split):
    clauses = [_opinion(rng, split) for _ in range(rng.choice([1, 2, 3]))]
    return {"text": " , ".join(c[0] for c in clauses), "label": round(sum(c[2] for c in clauses), 2)}


def _entities(rng, split):
    tokens, tags = [], []

    def add(words: list[str], kind: str | None):
        for i, word in enumerate(words):
            tokens.append(word)
            tags.append("O" if kind is None else ("B-" if i == 0 else "I-") + kind)

    person, place, org = _pick(rng, PEOPLE, split), _pick(rng, PLACES, split), _pick(rng, ORGS, split)
    pattern = rng.randrange(3)
    if pattern == 0:
        segments = [(person, "PER"), ("flew to", None), (place, "LOC"), ("for", None)]
        segments.append((org, "ORG") if rng.random() < 0.5 else ("a holiday", None))
    elif pattern == 1:
        segments = [(org, "ORG"), ("opened an office in", None), (place, "LOC")]
    else:
        segments = [("in", None), (place, "LOC"), (", we met", None), (person, "PER")]
    for words, kind in segments + [(".", None)]:
        add(words.split(), kind)
    return {"tokens": tokens, "tags": tags}


def _topics(rng, split):
    chosen = rng.sample(TOPICS, rng.choice([1, 1, 2]))
    phrases = [_pick(rng, TOPIC_WORDS[topic], split) for topic in chosen]
    filler = rng.choice(["people talked about", "the news covered", "everyone asked about", "we read about"])
    return {"text": f"{filler} {' and '.join(phrases)}", "label": sorted(chosen)}


def _paraphrase(rng, split):
    text, polarity, _ = _opinion(rng, split)
    if rng.random() < 0.5:
        subject, rest = text.split(" was ", 1)
        return {"text": text, "text_pair": f"i thought {subject} was {rest}", "label": "same"}
    other, other_polarity, _ = _opinion(rng, split)
    while other_polarity == polarity and other.split(" was ")[0] == text.split(" was ")[0]:
        other, other_polarity, _ = _opinion(rng, split)
    return {"text": text, "text_pair": f"i thought {other}", "label": "different"}


_GENERATORS = {
    "sentiment": _sentiment,
    "rating": _rating,
    "entities": _entities,
    "topics": _topics,
    "paraphrase": _paraphrase,
}


def demo_datasets(
    num_train: int = 400,
    num_eval: int = 100,
    seed: int = 0,
    tasks: list[str] | None = None,
    held_out_words: bool = False,
) -> dict[str, DatasetDict]:
    """`{task: DatasetDict(train, validation)}` for the demo tasks (all five by default). With `held_out_words=True`
    the validation rows use only words no training row contains (see the module docstring)."""
    names = tasks or list(_GENERATORS)
    unknown = [name for name in names if name not in _GENERATORS]
    if unknown:
        raise ValueError(f"Unknown demo task(s) {unknown}. Choose from: {', '.join(_GENERATORS)}.")
    result = {}
    for name in names:
        # Seeded by the task's fixed position, so a task's rows do not depend on which other tasks were asked for.
        rng = random.Random(seed * 7919 + list(_GENERATORS).index(name))
        if held_out_words:
            train = [_GENERATORS[name](rng, "train") for _ in range(num_train)]
            validation = [_GENERATORS[name](rng, "validation") for _ in range(num_eval)]
        else:
            rows = [_GENERATORS[name](rng, "all") for _ in range(num_train + num_eval)]
            train, validation = rows[:num_train], rows[num_train:]
        result[name] = DatasetDict(train=Dataset.from_list(train), validation=Dataset.from_list(validation))
    return result


def demo_tasks(tasks: list[str] | None = None) -> list[dict]:
    """Task specs (dicts) of the demo tasks, in the order of `demo_datasets`."""
    names = tasks or list(_GENERATORS)
    return [dict(task) for task in DEMO_TASKS if task["name"] in names]
