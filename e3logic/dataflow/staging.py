"""What a run leaves in `.e3/staging/` and how its task processes are marked: small helpers
the decision, the execution and crash recovery share (kept light: the warm path imports
this)."""
from __future__ import annotations

from ..core.hashing import hash_parts


def run_token(repo, run: str) -> str:
    """Marks a run's task processes (repository + run id: run ids repeat across repos)."""
    return hash_parts([str(repo.dir.resolve()), run])[:32]


def clear_staging(repo, run: str) -> None:
    """Remove the staged task outputs a run left behind (their names end in the run id)."""
    d = repo.dir / "staging"
    if d.is_dir():
        for f in d.glob(f"out-*-{run}-*"):
            f.unlink(missing_ok=True)
