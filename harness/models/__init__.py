"""Models the harness writes itself (no downloads)."""

from harness.models.tiny import write_tiny_model

__all__ = ["write_tiny_model"]
