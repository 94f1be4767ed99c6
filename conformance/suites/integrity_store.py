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


# -- gc --
# gc cannot break a repository (issue 15): what `go` compares against is a root, and
# `e3 gc --min-age 0` beside running go/set/reset/checkout commands (real processes) leaves
# fsck clean and every output equal to an independent computation.
from tests.test_gc_concurrency import (  # noqa: E402,F401
    slow_proj,
    slow_template,
    test_a_killed_go_leaves_no_lock_behind_for_gc,
    test_go_and_its_dry_run_work_after_a_set_and_a_gc_at_min_age_zero,
    test_go_works_after_a_reset_and_a_gc_at_min_age_zero,
    test_gc_beside_a_loop_of_sets_loses_no_dataset,
    test_gc_beside_checkouts_and_resets_keeps_the_working_copy_whole,
    test_gc_looping_beside_a_run_with_slow_tasks_breaks_nothing,
    test_gc_waits_for_a_running_go_and_names_it,
)
