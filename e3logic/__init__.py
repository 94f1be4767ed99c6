"""e3logic: reproducible, content-addressed dataflow engine with a logic core.

Layers (DESIGN.md §3), each importing only the ones before it:
core → repo → sdk → logic → plan → exec → dataflow → api → cli.
Heavy libraries are imported lazily so `e3 --version` starts fast.
"""
from pathlib import Path

__version__ = "0.1.0"

#: the source checkout root (holds rules/ and examples/)
SOURCE_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = SOURCE_ROOT / "rules"
EXAMPLES_DIR = SOURCE_ROOT / "examples"
