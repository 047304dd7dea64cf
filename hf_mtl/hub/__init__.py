"""What goes to the Hugging Face Hub with a model: the model card (built from `model_cards/`), secrets redacted."""
