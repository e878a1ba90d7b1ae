"""Model classes by name, so a checkpoint can rebuild any architecture from its file alone.

Every architecture module decorates its classes with :func:`register_model`; the checkpoint
loader imports the built-in architectures (:mod:`model.zoo`) before it looks a name up.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["MODEL_CLASSES", "build_model", "register_model"]

MODEL_CLASSES: dict[str, type[nn.Module]] = {}


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Make ``cls`` loadable by name. It must define ``constructor_args() -> dict``."""
    if not callable(getattr(cls, "constructor_args", None)):
        raise TypeError(f"{cls.__name__} needs a constructor_args() method to be checkpointed")
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def build_model(class_name: str, args: dict[str, Any]) -> nn.Module:
    """Instantiate a registered model class from its constructor arguments."""
    import model.zoo  # noqa: F401  (registers the built-in architectures)

    cls = MODEL_CLASSES.get(class_name)
    if cls is None:
        raise KeyError(f"unknown model class {class_name!r}; registered: {sorted(MODEL_CLASSES)}")
    return cls(**args)
