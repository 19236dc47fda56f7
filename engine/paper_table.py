"""Paper tables: groups x summaries, mean and 95% interval over seeds, for a report.

This module owns the table students paste into a report (W&B issues 1657 and 632): one row
per group of runs (engine.verdicts' grouping: by default everything except the seed), one
column per summary (`final:val/acc`, `best:val/loss`, `steps_to:val/acc:90` ...), each cell
"mean ± half-width" of the 95% interval (Student's t over the group's runs) and n. A cell is
marked best (bold in LaTeX and Markdown, `best` in CSV) only when the verdicts say it is
better than every other group in that column (Holm-corrected Welch tests, engine.verdicts);
a column where the data cannot tell has no best cell. Rendered as LaTeX (booktabs),
Markdown or CSV; `bar_figure` draws one summary's group means with their intervals.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import plotly.graph_objects as go

from engine import describe, figure_style, verdicts
from engine.verdicts import ALPHA, Summary

FORMATS = ("latex", "markdown", "csv")


@dataclass
class Cell:
    mean: float | None
    low: float | None          # 95% interval of the mean
    high: float | None
    n: int
    best: bool = False


@dataclass
class Table:
    groups: list[str]                                 # row names, in order of first run
    summaries: list[Summary]                          # columns
    cells: dict = field(default_factory=dict)         # (group, column index) -> Cell
    notes: list[str] = field(default_factory=list)    # per column: why no cell is best
    colors: dict = field(default_factory=dict)        # group -> its runs' hue on Compare

    def column_title(self, j: int) -> str:
        return self.summaries[j].describe()


def build(frame, runs, summaries: list[Summary], group_by=verdicts.EXCEPT_SEED) -> Table:
    """The table of these runs (their metric rows in `frame`) over `summaries`."""
    if not summaries:
        raise ValueError("summary: give at least one summary, e.g. final:val/acc")
    table = None
    for j, summary in enumerate(summaries):
        result = verdicts.verdicts(frame, runs, summary, group_by)
        if table is None:
            table = Table([g.name for g in result.groups], list(summaries),
                          colors=result.colors)
        for g in result.groups:
            table.cells[(g.name, j)] = Cell(g.mean if g.n else None, g.ci_low, g.ci_high, g.n)
        best, why = _best(result, summary)
        if best is not None:
            table.cells[(best, j)].best = True
        table.notes.append(why)
    return table


def _best(result, summary: Summary) -> tuple[str | None, str]:
    """The group better than every other in this column (each pair significant after Holm's
    correction), or None and why not."""
    scored = [g for g in result.groups if g.n]
    if len(scored) < 2:
        return None, "one group: nothing to compare"
    sign = 1 if summary.higher_is_better else -1
    top = max(scored, key=lambda g: sign * g.mean)
    pairs = [p for p in result.pairs if top.name in (p.a, p.b)]
    others = {g.name for g in scored} - {top.name}
    beaten = set()
    for p in pairs:
        other = p.b if p.a == top.name else p.a
        if p.p_holm is not None and p.p_holm < ALPHA:
            beaten.add(other)
    if beaten >= others:
        return top.name, ""
    return None, (f"{top.name} has the best mean, but the data cannot tell it from "
                  + ", ".join(sorted(others - beaten)))


def _number(x: float | None, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.1f}" if unit == "points" else f"{x:.4g}"     # accuracy in %: one decimal


def _cell_text(cell: Cell | None, unit: str, *, plus: str = "±") -> str:
    if cell is None or cell.mean is None:
        return "–"
    text = _number(cell.mean, unit)
    if cell.low is not None and cell.high is not None and math.isfinite(cell.low):
        text += f" {plus} {_number((cell.high - cell.low) / 2, unit)}"
    return text


def render(table: Table, fmt: str) -> str:
    """The table as LaTeX (booktabs; \\textbf for the best cells), Markdown (**best**) or CSV
    (columns mean, ci_low, ci_high, n, best per summary)."""
    if fmt not in FORMATS:
        raise ValueError(f"table: {fmt!r} is not allowed; allowed: " + ", ".join(FORMATS))
    columns = range(len(table.summaries))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["group", "summary", "mean", "ci_low", "ci_high", "n", "best"])
        for g in table.groups:
            for j in columns:
                c = table.cells.get((g, j))
                writer.writerow([g, table.summaries[j].text(), c.mean, c.low, c.high, c.n,
                                 c.best])
        return out.getvalue()
    titles = [table.column_title(j) for j in columns]
    units = [s.unit for s in table.summaries]
    if fmt == "markdown":
        lines = ["| group | " + " | ".join(titles) + " | n |",
                 "|---|" + "---|" * len(titles) + "---|"]
        for g in table.groups:
            cells = []
            for j in columns:
                c = table.cells.get((g, j))
                text = _cell_text(c, units[j])
                cells.append(f"**{text}**" if c and c.best else text)
            n = max((table.cells[(g, j)].n for j in columns), default=0)
            lines.append(f"| {g} | " + " | ".join(cells) + f" | {n} |")
        notes = [f"{titles[j]}: {why}" for j, why in enumerate(table.notes) if why]
        footer = ["", "Mean ± half-width of the 95% interval over seeds; bold: better than "
                      "every other group (Welch's test, Holm-corrected)."]
        return "\n".join(lines + footer + ([""] + notes if notes else [])) + "\n"
    lines = [r"\begin{tabular}{l" + "r" * len(titles) + "r}", r"\toprule",
             "Group & " + " & ".join(_latex(t) for t in titles) + r" & $n$ \\", r"\midrule"]
    for g in table.groups:
        cells = []
        for j in columns:
            c = table.cells.get((g, j))
            text = _cell_text(c, units[j], plus=r"$\pm$").replace("%", r"\%")
            cells.append(rf"\textbf{{{text}}}" if c and c.best else text)
        n = max((table.cells[(g, j)].n for j in columns), default=0)
        lines.append(f"{_latex(g)} & " + " & ".join(cells) + rf" & {n} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    """User text (group names from run configs) safe inside a LaTeX table."""
    out = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\~{}"),
                 ("^", r"\^{}")):
        out = out.replace(a, b)
    return out.replace("·", r"$\cdot$")


def bar_figure(table: Table, column: int = 0) -> go.Figure:
    """One summary's group means as bars with their 95% intervals; the best group (if the
    verdicts name one) outlined."""
    colors = table.colors or describe.palette_colors(table.groups)
    means, errors, names, lines = [], [], [], []
    for g in table.groups:
        c = table.cells.get((g, column))
        means.append(c.mean if c and c.mean is not None else float("nan"))
        half = (c.high - c.low) / 2 if c and c.low is not None and c.high is not None else 0
        errors.append(half if math.isfinite(half) else 0)
        names.append(describe.category_label(g, len(table.groups)))
        lines.append(3 if c and c.best else 0)
    fig = figure_style.figure(go.Bar(x=names, y=means, marker=dict(
        color=[colors[g] for g in table.groups], line=dict(color="black", width=lines)),
        error_y=dict(type="data", array=errors, visible=True),
        hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(title=dict(text=f"{table.column_title(column)}: mean and 95% interval",
                                 font=dict(size=15)), height=420, showlegend=False,
                      margin=dict(l=60, r=20, t=60, b=40))
    fig.update_yaxes(title_text=table.column_title(column))
    fig.update_xaxes(tickangle=0, automargin=True)     # names wrapped, level
    return fig
