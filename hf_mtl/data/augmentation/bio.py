"""BIO tag helpers for the mention-level augmentations: parse tags, split a sentence into segments, rebuild tags.

A segment is a maximal run of `O` tags or one entity mention. Like conlleval, an `I-X` that does not continue an
`X` mention (after `O` or another type) opens a new mention, so IOB1-style input is still segmented sensibly.
"""

from __future__ import annotations

from typing import NamedTuple

from .base import AugmentationError


class Segment(NamedTuple):
    start: int
    end: int  # exclusive
    entity_type: str | None  # None for a run of O tags


def split_tag(tag: str) -> tuple[str, str | None] | None:
    """`"O"` -> `("O", None)`, `"B-PER"` -> `("B", "PER")`; `None` if `tag` is not a BIO tag."""
    if tag == "O":
        return "O", None
    if isinstance(tag, str) and len(tag) > 2 and tag[0] in "BI" and tag[1] == "-":
        return tag[0], tag[2:]
    return None


def check_bio_tags(tags: list[str], row: int, method: str) -> None:
    for tag in tags:
        if split_tag(tag) is None:
            raise AugmentationError(
                f"Row {row}: tag {tag!r} is not a BIO tag ('O', 'B-<type>', 'I-<type>'). {method!r} needs BIO tags to "
                "find mentions; 'label_wise_token_replacement' works with any tag scheme."
            )


def segments(tags: list[str]) -> list[Segment]:
    """Split BIO `tags` into O-runs and mentions."""
    out: list[Segment] = []
    for i, tag in enumerate(tags):
        parsed = split_tag(tag)
        if parsed is None:
            raise AugmentationError(f"Tag {tag!r} at position {i} is not a BIO tag ('O', 'B-<type>', 'I-<type>').")
        prefix, entity_type = parsed
        if out and out[-1].end == i:
            last = out[-1]
            continues_o = prefix == "O" and last.entity_type is None
            continues_mention = prefix == "I" and last.entity_type == entity_type
            if continues_o or continues_mention:
                out[-1] = last._replace(end=i + 1)
                continue
        out.append(Segment(i, i + 1, entity_type))
    return out


def mention_tags(entity_type: str, length: int) -> list[str]:
    """Tags of a fresh mention: `B-X` then `I-X` for the remaining tokens."""
    return [f"B-{entity_type}"] + [f"I-{entity_type}"] * (length - 1)


def is_valid_bio(tags: list[str]) -> bool:
    """Strict BIO (IOB2): every `I-X` follows `B-X` or `I-X`."""
    previous: str | None = None
    for tag in tags:
        parsed = split_tag(tag)
        if parsed is None:
            return False
        prefix, entity_type = parsed
        if prefix == "I" and previous != entity_type:
            return False
        previous = entity_type
    return True
