"""Settings of a backbone that Transformers' configs name differently per model family, or leave out.

The heads and the extra layers some sharing schemes add (private encoders, expert feed-forwards) take their dropout
from the backbone, as Transformers' own task heads do; a fixed attribute name (BERT's `hidden_dropout_prob`) would
silently fall back to a default on DistilBERT, XLNet, GPT-2 or ModernBERT.
"""

from __future__ import annotations


#: The dropout on a block's hidden states, by family: BERT and most encoders, DistilBERT / XLNet / BART, GPT-2,
#: ModernBERT (its feed-forward dropout), BLOOM / Falcon.
HIDDEN_DROPOUT_NAMES = ("hidden_dropout_prob", "dropout", "resid_pdrop", "mlp_dropout", "hidden_dropout")
#: The dropout the family's own classification head uses, where it names one: BERT / RoBERTa / ELECTRA / ModernBERT,
#: DistilBERT, ALBERT.
CLASSIFIER_DROPOUT_NAMES = ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob")


def _first_rate(encoder_config, names: tuple[str, ...]) -> float | None:
    for name in names:
        value = getattr(encoder_config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
            return float(value)
    return None


def hidden_dropout(encoder_config, default: float = 0.1) -> float:
    """The backbone's dropout on hidden states (`HIDDEN_DROPOUT_NAMES`), or `default` where it names none."""
    rate = _first_rate(encoder_config, HIDDEN_DROPOUT_NAMES)
    return default if rate is None else rate


def classifier_dropout(encoder_config, default: float = 0.1) -> float:
    """The dropout Transformers' own head for this backbone would use: its classifier dropout where set, else its
    hidden-state dropout (as `BertForSequenceClassification` falls back), else `default`."""
    rate = _first_rate(encoder_config, CLASSIFIER_DROPOUT_NAMES)
    return hidden_dropout(encoder_config, default) if rate is None else rate


def max_positions(encoder_config) -> int | None:
    """The longest sequence the encoder embeds, or None without a limit (XLNet's relative positions report -1)."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None
