"""Integrity suite: logic (gathered by test_integrity.py)."""
