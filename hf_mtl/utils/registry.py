"""One small registry shared by every pluggable family (heads, weightings, samplers, sharing schemes).

A family is chosen by a lowercase key in configs and recipes; an unknown key fails with the list of
choices, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar


T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase keys to classes of one family.

    Args:
        family (`str`): What the registry holds, used in error messages (e.g. `"task type"`).

    Example:

    ```python
    >>> HEADS = Registry("task type")
    >>> @HEADS.register("regression")
    ... class RegressionHead: ...
    >>> HEADS.get("regression").__name__
    'RegressionHead'
    >>> HEADS.get("regresion")
    Traceback (most recent call last):
    ...
    ValueError: Unknown task type 'regresion'. Choose one of: regression. Did you mean 'regression'?

    ```
    """

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        if not key or key != key.lower():
            raise ValueError(f"{self.family} keys are non-empty lowercase strings, got {key!r}.")

        def decorator(obj: T) -> T:
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"The {self.family} {key!r} is already registered to {self._entries[key]!r}.")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, key: str) -> T:
        if key not in self._entries:
            raise ValueError(self.unknown_message(key))
        return self._entries[key]

    def unknown_message(self, key: object) -> str:
        message = f"Unknown {self.family} {key!r}. Choose one of: {', '.join(self.choices())}."
        close = difflib.get_close_matches(str(key), self.choices(), n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        return message

    def choices(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.choices())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, choices={self.choices()})"
