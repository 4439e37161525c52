"""The base of every result and manifest model: a field it does not know is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ResultModel(BaseModel):
    """A result or manifest part: unknown fields are refused, so a misspelt one never passes."""

    model_config = ConfigDict(extra="forbid")
