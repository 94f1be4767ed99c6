"""Integrity suite: metadata (gathered by test_integrity.py)."""
