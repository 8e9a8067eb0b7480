"""Tables, result files and figures shared by the demo and the benchmark suites.

Figures are matplotlib ``Figure`` objects rendered straight to files, so nothing here switches
the global backend or needs a display; matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import json
from pathlib import Path


def format_table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def write_report(out_dir: Path, stem: str, results: dict, table: str, figure) -> Path:
    """Write ``stem.json`` (results), ``stem.txt`` (the table) and ``stem.png`` (the figure)
    into ``out_dir``; returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2))
    (out_dir / f"{stem}.txt").write_text(table + "\n")
    figure.tight_layout()
    figure.savefig(out_dir / f"{stem}.png", dpi=100)
    print(f"\nWrote {json_path}, {stem}.txt and {stem}.png")
    return json_path


class UnknownCaseError(ValueError):
    """A benchmark case asked for by name that the suite does not have."""


def select_cases(cases: list, only: list[str] | None) -> list:
    """The cases named in ``only`` (all when None); unknown names raise UnknownCaseError."""
    if only is None:
        return cases
    known = [case.name for case in cases]
    unknown = sorted(set(only) - set(known))
    if unknown:
        raise UnknownCaseError(f"Unknown benchmark case(s) {unknown}; available: {known}.")
    return [case for case in cases if case.name in only]
