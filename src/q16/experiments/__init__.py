"""Paper experiments: protocols that sweep many cheap prompt fits over one feature cache."""

from __future__ import annotations
