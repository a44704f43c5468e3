"""Name -> factory registries for pluggable backends (depth estimators, frame generators)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A small named registry: ``@REG.register("name")`` on a class or factory, ``REG.create("name", **kw)``.

    Args:
        kind: what is registered, used in error messages ("depth backend", "frame generator").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            doc = (factory.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc[0] if doc else "")
            return factory

        return decorator

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._factories)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description."""
        return dict(self._descriptions)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._factories) or '(none)'}")
        return self._factories[name]

    def create(self, name: str, **kwargs) -> T:
        """Instantiate the backend registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
