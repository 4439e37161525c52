"""What the grid may assume of a pydantic model: which fields validate on their own, plain dumps.

``harness.config.grid`` validates each distinct value of such a field once and shares the
instance, and reads dumps field by field only where no serialiser changes them.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def sole_model(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation is (``X`` or ``X | None``), or None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    others = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(others) == 1 and isinstance(others[0], type) and issubclass(others[0], BaseModel):
        return others[0]
    return None


def independent_blocks(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Fields of ``model`` whose sub-model validates a dict on its own, as the field does."""
    decorators = model.__pydantic_decorators__
    if any(d.info.mode != "after" for d in decorators.model_validators.values()):
        return {}  # a validator that sees the raw input would see instances instead of dicts
    checked = {name for d in decorators.field_validators.values() for name in d.info.fields}
    if "*" in checked:
        return {}
    blocks = {}
    for name, info in model.model_fields.items():
        sub = sole_model(info.annotation)
        if sub is not None and name not in checked and not info.metadata and not info.discriminator:
            blocks[name] = sub
    return blocks


def plain_serialization(schema: Any) -> bool:
    """Whether no part of a pydantic core schema changes how values are dumped."""
    if isinstance(schema, dict):
        if schema.get("computed_fields") or any(k.startswith("serialization") for k in schema):
            return False
        return all(plain_serialization(v) for v in schema.values())
    if isinstance(schema, list | tuple):
        return all(plain_serialization(v) for v in schema)
    return True
