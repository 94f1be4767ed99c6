"""e3logic: reproducible, content-addressed dataflow engine with a logic core.

Layers (DESIGN.md §3), each importing only the ones before it:
core → repo → sdk → logic → plan → exec → dataflow → api → cli.
Heavy libraries are imported lazily so `e3 --version` starts fast.
"""
from pathlib import Path

__version__ = "0.1.0"

#: the directory that holds the `e3logic` package: the source checkout (tests/, docs/, bench/)
#: or, for an installed package, site-packages
SOURCE_ROOT = Path(__file__).resolve().parent.parent

#: package data, shipped inside the package (pyproject.toml, package-data) and read through
#: importlib.resources: `RULES_DIR` (the shipped rules/*.dl) and `EXAMPLES_DIR` (the bundled
#: example packages). Both are real directories, resolved on first use (module __getattr__).
_DATA_DIRS = {"RULES_DIR": "rules", "EXAMPLES_DIR": "examples"}


def __getattr__(name: str):
    if name not in _DATA_DIRS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    path = _data_dir(_DATA_DIRS[name])
    globals()[name] = path
    return path


def _data_dir(name: str) -> Path:
    """The package-data directory `name` as a file-system path: the directory itself for a
    checkout or a normal install; a one-off copy in a temp directory when the package is
    imported from somewhere else (a zip file)."""
    here = Path(__file__).parent / name
    if here.is_dir():  # imported from the file system: no need for importlib.resources (~13 ms)
        return here
    from importlib.resources import files

    res = files(__name__) / name
    if isinstance(res, Path):
        return res
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f"e3logic-{name}-"))
    atexit.register(shutil.rmtree, tmp, True)

    def copy(src, dst: Path) -> None:
        dst.mkdir(exist_ok=True)
        for child in src.iterdir():
            if child.is_dir():
                copy(child, dst / child.name)
            else:
                (dst / child.name).write_bytes(child.read_bytes())

    copy(res, tmp / name)
    return tmp / name
