"""Integrity suite: store (gathered by test_integrity.py)."""
