"""A containerised harness for measuring the energy of LLM inference."""

__version__ = "0.1.0"
