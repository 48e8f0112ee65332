"""The version of gptnas (also written into exported networks and run records)."""

__version__ = "0.1.0"
