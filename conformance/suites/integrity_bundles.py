"""Integrity suite: bundles (gathered by test_integrity.py)."""
