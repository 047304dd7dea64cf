"""Keeping secrets out of what goes to the Hub: token-shaped strings, secret-named keys, secret lines of a recipe.

A card, a saved `recipe.yaml` and the training settings shown in a card all pass through here, so a Hub token given
in a recipe, an override or `TrainingArguments.hub_token` never lands in a pushed file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml


REDACTED = "<redacted>"
# Keys whose values never go into a card, at any depth (`hub_token`, `api_key`, `wandb_password`, ...).
SECRET_KEY = re.compile(r"token|password|secret|key", re.IGNORECASE)
HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")
_SECRET_LINE = re.compile(r"^(\s*-?\s*[\"']?[\w.-]*(?:token|password|secret|key)[\w.-]*[\"']?\s*:).*$", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """Replace anything shaped like a Hugging Face token (`hf_` + 30 or more letters and digits)."""
    return HF_TOKEN.sub(REDACTED, text)


def drop_secrets(value: Any) -> Any:
    """A copy of `value` without dict keys that name a token, password, secret or key, at any depth."""
    if isinstance(value, Mapping):
        return {k: drop_secrets(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [drop_secrets(v) for v in value]
    return redact_tokens(value) if isinstance(value, str) else value


def recipe_text(recipe: str | Mapping | None) -> str:
    """A recipe for a card: a mapping as YAML without secret keys; text keeps its comments and layout, with the
    value of every secret-named key blanked line by line."""
    if recipe is None:
        return ""
    if isinstance(recipe, Mapping):
        return yaml.safe_dump(drop_secrets(recipe), sort_keys=False).strip()
    lines = [_SECRET_LINE.sub(rf"\1 {REDACTED}", line) for line in str(recipe).strip().splitlines()]
    return redact_tokens("\n".join(lines))
