"""The datasheet's questions about people: faces counted and boxed, a face-blurred release,
and removal requests found by hash and by likeness."""

PDQ_THRESHOLD = 24
"""Bits: the removal search's PDQ match distance, chosen by the measurement in
``results/privacy/removal-matching.json`` (scripts/measure_removal_matching.py)."""
COSINE_THRESHOLD = 0.95
"""CLIP cosine for a likeness match. NOT measured (no real CLIP weights where the PDQ
threshold was measured): a setting to check on real data."""
