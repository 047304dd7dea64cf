"""`MultiTaskModel.push_to_hub`: Transformers' push, with hf_mtl's card instead of the generic one.

Transformers' `push_to_hub` writes a card that says `library_name: transformers` and nothing about the tasks, and its
usage snippet fails without `import hf_mtl`. This push saves the model the same way and uploads it in one commit
with the card of `build_model_card`. A card already on the Hub repo is kept (as Transformers keeps it: a card pushed
by `Trainer.push_to_hub` holds the results), unless card arguments are given, which always write a new card.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from huggingface_hub import CommitInfo, ModelCard, create_repo, upload_folder
from huggingface_hub.errors import EntryNotFoundError

from .model_card import build_model_card


def push_model_to_hub(
    model: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    **card_kwargs: Any,
) -> CommitInfo:
    """Save `model` (a `MultiTaskModel`) and upload it with its card; `card_kwargs` go to `build_model_card`
    (eval_results, datasets, training, license, language, notes, ...)."""
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    card = None if card_kwargs else _existing_card(repo_id, token)
    if card is None:
        card = build_model_card(model.config, model_id=repo_id, tags=tags, **card_kwargs)
    elif tags:
        card.data.tags = list(dict.fromkeys([*(card.data.tags or []), *tags]))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        card.save(os.path.join(folder, "README.md"))
        return upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload model",
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def _existing_card(repo_id: str, token: bool | str | None) -> ModelCard | None:
    try:
        return ModelCard.load(repo_id, token=token)
    except EntryNotFoundError:
        return None
