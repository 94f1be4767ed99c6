"""A run's staged outputs and process marks."""
from e3logic.dataflow.staging import clear_staging, run_token
from e3logic.repo.repository import Repository


def test_a_run_token_is_stable_per_repository_and_run_and_differs_across_them(tmp_path):
    a, b = Repository.init(tmp_path / "a"), Repository.init(tmp_path / "b")
    assert run_token(a, "r1") == run_token(a, "r1") != run_token(a, "r2")
    assert run_token(a, "r1") != run_token(b, "r1")


def test_clearing_a_runs_staging_removes_only_its_own_files(tmp_path):
    repo = Repository.init(tmp_path / "p")
    d = repo.dir / "staging"
    d.mkdir(exist_ok=True)
    mine, other = d / "out-x-r1-0", d / "out-x-r2-0"
    mine.write_text("a")
    other.write_text("b")
    clear_staging(repo, "r1")
    assert not mine.exists() and other.exists()
