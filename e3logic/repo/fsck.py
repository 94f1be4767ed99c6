"""Integrity checking: re-hash every object, follow every ref (`e3 fsck`)."""
from __future__ import annotations

from ..core.hashing import hash_file
from .gc import roots


def fsck(repo) -> dict:
    """Re-hash every object and follow every ref; report corrupt and missing objects."""
    corrupt = []
    count = 0
    for h in repo.objects:
        count += 1
        try:
            if hash_file(repo.objects.path(h)) != h:
                corrupt.append(h)
        except OSError:
            corrupt.append(h)
    bad_refs: list[str] = []
    _, missing = roots(repo, bad_refs)
    head = repo.head
    if not (repo.workspaces_dir / head / "state").exists():
        bad_refs.append(f"HEAD (names workspace '{head}', which does not exist)")
    missing = sorted(missing)
    return {"ok": not corrupt and not missing and not bad_refs, "corrupt": sorted(corrupt),
            "missing": missing, "bad_refs": sorted(bad_refs), "objects": count,
            "pending_temp_files": len(repo.objects.temp_files())}
