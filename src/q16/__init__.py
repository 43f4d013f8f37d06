"""q16: help dataset creators answer Question 16 of Datasheets for Datasets."""

from __future__ import annotations

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str] = ("appropriate", "inappropriate")
"""Label 0 and label 1 everywhere in the package (1 = possibly offensive)."""
