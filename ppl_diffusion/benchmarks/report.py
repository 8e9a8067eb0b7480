"""Tables, result files and figures shared by the demo and the benchmark suites.

Figures are matplotlib ``Figure`` objects rendered straight to files, so nothing here switches
the global backend or needs a display; matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def format_table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def aggregate_seeds(per_seed: list[dict]) -> dict:
    """``[{row: {metric: value}}]`` over seeds -> ``{row: {metric: {"mean", "sd"}}}``."""
    return {
        row: {
            metric: {
                "mean": float(np.mean([seed[row][metric] for seed in per_seed])),
                "sd": float(np.std([seed[row][metric] for seed in per_seed])),
            }
            for metric in per_seed[0][row]
        }
        for row in per_seed[0]
    }


def format_mean_sd(stat: dict, digits: int) -> str:
    """``mean ± sd`` (just the mean when the sd is 0, e.g. a single seed)."""
    if stat["sd"] == 0:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def grouped_bar_figure(names: list[str], groups: dict, ylabel: str, title: str, log: bool = False):
    """One bar per name and group: ``groups`` maps a label to ``{"values", "errors",
    "colors"}`` (errors and colors optional), drawn side by side for each name."""
    figure = new_figure((1.3 * len(names) + 3, 4))
    ax = figure.subplots()
    width = 0.8 / len(groups)
    for k, (label, group) in enumerate(groups.items()):
        ax.bar(
            np.arange(len(names)) + k * width,
            group["values"],
            width,
            yerr=group.get("errors"),
            color=group.get("colors", f"C{k}"),
            edgecolor=f"C{k}",
            label=label,
        )
    ax.set_xticks(
        np.arange(len(names)) + width * (len(groups) - 1) / 2, names, rotation=30, ha="right"
    )
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    from matplotlib.patches import Patch

    # Bars may be recoloured one by one; the legend shows each group's own colour.
    ax.legend(handles=[Patch(color=f"C{k}", label=label) for k, label in enumerate(groups)])
    return figure, ax


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


def changed_settings_label(parser, args) -> str:
    """A file stem naming the command-line settings that differ from ``parser``'s defaults
    (``defaults`` when none do), so each script run keeps its own result files."""
    changed = [
        f"{name}_{value:g}" if isinstance(value, float) else f"{name}_{value}"
        for name, value in vars(args).items()
        if value != parser.get_default(name)
    ]
    return "_".join(changed) or "defaults"


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
