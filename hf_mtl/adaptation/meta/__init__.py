"""Meta-learning for fast adaptation to new tasks: `MetaTrainer` with FOMAML, Reptile and second-order MAML
(`META_ALGORITHMS`), configured by `MetaLearningArguments`, on k-shot episodes drawn from the tasks' datasets."""

from .algorithms import FOMAML, MAML, META_ALGORITHMS, InnerLoop, MetaAlgorithm, Reptile, adapt
from .arguments import MetaLearningArguments
from .episodes import Episode, balanced_order, sample_episode
from .trainer import MetaTrainer


__all__ = [
    "FOMAML",
    "MAML",
    "META_ALGORITHMS",
    "Episode",
    "InnerLoop",
    "MetaAlgorithm",
    "MetaLearningArguments",
    "MetaTrainer",
    "Reptile",
    "adapt",
    "balanced_order",
    "sample_episode",
]
