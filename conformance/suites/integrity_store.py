"""Integrity suite: store (gathered by test_integrity.py) — verified reads, corrupt objects
quarantined and recomputed, good bytes replacing a corrupt file, one snapshot per run, go
healing from objects deleted by hand; then gc beside other commands.

The scenarios are the end-to-end ones of tests/test_integrity.py, through the public
commands only; they are replayed here so that the scoreboard counts them."""
from tests.test_integrity import (  # noqa: F401  (pytest collects what is imported)
    proj,
    test_a_corrupt_cached_output_is_recomputed_before_a_dependent_reads_it,
    test_a_corrupt_input_dataset_stops_only_its_dependents_with_a_reason_naming_it,
    test_a_set_during_a_run_is_never_mixed_into_it,
    test_go_heals_when_the_settled_runs_root_or_a_memo_output_is_deleted_by_hand,
    test_setting_the_original_bytes_replaces_a_corrupt_object,
)

