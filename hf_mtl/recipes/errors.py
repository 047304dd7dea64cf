"""`RecipeError`: a bad recipe, reported in one line that names the recipe file and the key path."""

from __future__ import annotations

from ..errors import HfMtlError


class RecipeError(HfMtlError):
    """A recipe (or one of its data files) is wrong.

    The message reads `<recipe file>: <key path>: <what is wrong and the fix>`, on one line, so the CLI can print it
    as `hf-mtl: error: ...`. Key paths use the `--override` syntax (`training.learning_rate`, `tasks.sst2.metric`),
    so the fix can be tried from the command line.
    """

    def __init__(self, source: str, key: str | None, message: str):
        self.source, self.key = source, key
        self.detail = " ".join(str(message).split())  # one line, whatever the wrapped error looked like
        super().__init__(f"{source}: {key}: {self.detail}" if key else f"{source}: {self.detail}")
