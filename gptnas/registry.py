"""Names to classes, one shape for every kind of thing gptnas finds by name: search spaces, evaluators,
strategies (as timm's `@register_model`). A class registers itself with `@REGISTRY.register` and carries
its `name`; an unknown name is a one-line error that lists the valid ones."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from gptnas.errors import GptnasError, quote

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what the registered classes are, for error messages: "search space", "evaluator" ...
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator: makes `cls` findable by its `name`."""
        name = getattr(cls, "name", "")
        if not name or name in self._classes:
            raise ValueError(f"{self.kind} {cls.__name__} needs a unique name, got {name!r}")
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> T:
        if name not in self._classes:
            raise GptnasError(f"unknown {self.kind} {quote(str(name))}; valid: {', '.join(self._classes)}")
        return self._classes[name]

    def names(self) -> list[str]:
        return list(self._classes)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._classes.values()))
