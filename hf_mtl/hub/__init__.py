"""What goes to the Hugging Face Hub with a model: the model card (built from `model_cards/`) with its results as
Hub metadata, secrets redacted, and `MultiTaskModel.push_to_hub`'s upload."""
