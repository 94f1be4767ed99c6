"""Top layer: click commands. Human output with rich; `--json` everywhere."""
