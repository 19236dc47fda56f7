"""Exports of compared runs, shared by the app's Compare page and the CLI.

This module owns every file Train Lab writes for people to take away: the metrics as CSV
(every stored point, never downsampled), the runs' configs as JSON, the comparison chart as
self-contained interactive HTML, static PNG/SVG images, and a ZIP of all of them. It also
owns where such files may be written: `safe_export_path` only ever returns a path inside
the export folder (`engine.paths.export_dir()` unless given another).

Static images are drawn by plotly's kaleido, which drives a headless Chromium over its
DevTools pipe. The browser is found by `browser_path()`: `$BROWSER_PATH` (the variable
kaleido/choreographer themselves honour), else Debian's /usr/bin/chromium, else any Chrome or
Chromium on PATH. Choreographer starts it with --headless and --no-sandbox (so it runs as
root in a container); MathJax is switched off so nothing is fetched from the network. When
there is no browser, `figure_bytes` raises ExportError saying so: HTML, CSV and JSON exports
never need one.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import gzip
import html
import io
import json
import math
import os
import re
import shutil
import threading
import time
import unicodedata
import zipfile
from pathlib import Path

import orjson
import pandas as pd

from engine import config, describe, paths, plots

FORMATS = ("csv", "json", "html", "png", "svg", "zip")
STATIC_FORMATS = ("png", "svg")
MIME = {"csv": "text/csv", "json": "application/json", "html": "text/html",
        "png": "image/png", "svg": "image/svg+xml", "zip": "application/zip"}
MAX_NAME_LENGTH = 120             # characters of the file name, extension included
CSV_COLUMNS = ["run_id", "run_name", "step", "epoch", "metric", "value", "time"]
# Layout pixels of static images: the width the compare figure's legend is laid out for
# (plots.EXPORT_WIDTH_PX), so its rows are all in the image; the height is the figure's own.
IMAGE_WIDTH, IMAGE_HEIGHT = plots.EXPORT_WIDTH_PX, 560
PNG_SCALE = 2                            # PNG pixels per layout pixel (sharp on HiDPI)
RENDER_TIMEOUT_S = 90                    # kaleido's per-image timeout
DEBIAN_CHROMIUM = "/usr/bin/chromium"
NO_BROWSER_HINT = ("HTML, CSV and JSON exports still work without one. Install Chromium "
                   "(apt-get install chromium) or set BROWSER_PATH to a Chrome/Chromium binary.")


class ExportError(RuntimeError):
    """An export that cannot be made, e.g. no browser for static PNG/SVG images."""


class UnsafeNameError(ExportError, ValueError):
    """A refused export file name; the message names the field, the value and the rule."""

    def __init__(self, value, rule: str):
        self.value = value
        super().__init__(f"name: {value!r} {rule}")


# --- where files go --------------------------------------------------------------------------

def _check_fmt(fmt) -> str:
    if not isinstance(fmt, str) or fmt.lower().lstrip(".") not in FORMATS:
        raise ValueError(f"fmt: {fmt!r} is not allowed; allowed: " + ", ".join(FORMATS))
    return fmt.lower().lstrip(".")


def default_name(prefix: str = "trainlab-compare") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str, fmt: str) -> str:
    """The export file name `<name>.<fmt>` after checking the name: text, not empty, no
    control characters, no path separators, no '..', not hidden, no Windows-reserved
    characters, at most MAX_NAME_LENGTH characters with the extension, and no extension but
    fmt's (a name without one gets it). Raises UnsafeNameError naming the rule."""
    fmt = _check_fmt(fmt)
    if not isinstance(name, str):
        raise UnsafeNameError(name, "must be text")
    if not name.strip():
        raise UnsafeNameError(name, "must not be empty")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UnsafeNameError(name, "must not contain control characters (newline, NUL, ...)")
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise UnsafeNameError(name, "must be a file name, without path separators ('/' or '\\')")
    if ".." in name:
        raise UnsafeNameError(name, "must not contain '..'")
    if name.startswith("."):
        raise UnsafeNameError(name, "must not start with '.' (hidden file)")
    if re.search(r'[<>:"|?*]', name):
        raise UnsafeNameError(name, 'must not contain any of < > : " | ? *')
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() == fmt:
        file_name = f"{stem}.{fmt}"
    elif dot and ext.lower() in FORMATS + ("pdf", "jpg", "jpeg", "webp", "txt", "exe", "sh"):
        raise UnsafeNameError(name, f"has the extension .{ext}; a {fmt} export must end in .{fmt}"
                                    " (or give the name without an extension)")
    else:
        file_name = f"{name}.{fmt}"
    if len(file_name) > MAX_NAME_LENGTH:
        raise UnsafeNameError(name, f"is too long: the file name may have at most "
                                    f"{MAX_NAME_LENGTH} characters with its extension")
    return file_name


def safe_export_path(name: str, fmt: str, out_dir: str | os.PathLike | None = None) -> Path:
    """The path `<out_dir>/<name>.<fmt>` for a name that passes check_name, whose resolved
    path (symlinks followed) lies directly inside out_dir (default paths.export_dir(),
    created when missing). Raises UnsafeNameError (a ValueError) naming the rule broken."""
    file_name = check_name(name, fmt)
    root = Path(out_dir if out_dir is not None else paths.export_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    path = (root / file_name).resolve()
    if path.parent != root:
        raise UnsafeNameError(name, f"would be written outside the export folder {root}")
    return path


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write via a temporary file in the same folder and rename, so a reader never sees half
    a file and a failed export leaves nothing behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --- data exports --------------------------------------------------------------------------

def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


def metrics_csv(frame: pd.DataFrame, runs, *, config_columns: bool = False) -> bytes:
    """Every stored point of these runs (all metrics, never downsampled), one row each:
    run_id, run_name, step, epoch, metric, value (as stored: accuracy a fraction), time (unix
    seconds). Ordered by the runs' order, then metric, then step. nan/inf are written as
    'nan'/'inf'/'-inf', never as empty cells. With config_columns (the exports people open in
    a spreadsheet), after run_name: the run's label (describe.run_labels) and one column per
    config field that differs among the runs ('' where the field does not apply)."""
    runs = list(runs)
    order = {_get(r, "id"): i for i, r in enumerate(runs)}
    names = {_get(r, "id"): _get(r, "name", "") or "" for r in runs}
    columns = _config_columns(runs) if config_columns else {}
    part = frame[frame["run"].isin(order)] if frame is not None and len(frame) else None
    if part is None or not len(part):
        return (",".join(CSV_COLUMNS[:2] + list(columns) + CSV_COLUMNS[2:]) + "\n").encode()
    part = part.assign(_order=part["run"].map(order))
    part = part.sort_values(["_order", "name", "step", "id"], kind="stable")
    out = pd.DataFrame({"run_id": part["run"], "run_name": part["run"].map(names),
                        **{c: part["run"].map(v) for c, v in columns.items()},
                        "step": part["step"], "epoch": part["epoch"], "metric": part["name"],
                        "value": part["value"], "time": part["time"]})
    return out.to_csv(index=False, na_rep="nan", lineterminator="\n").encode()


def _config_columns(runs) -> dict:
    """{column: {run id: text}}: the runs' label, then each config field that differs."""
    labels = describe.run_labels(runs)
    configs = {_get(r, "id"): describe.full_config(_get(r, "config")) for r in runs}
    out = {"label": labels}
    for f in describe.differing_fields(configs.values()):
        out[f] = {rid: describe.value_text(c.get(f)) if config.applies(f, c) else ""
                  for rid, c in configs.items()}
    return out


def run_info(run) -> dict:
    """One run for the JSON export: identity, status, tags, timings, its full config and its
    provenance (code and library versions, device, threads; {} when not recorded)."""
    started, ended = _get(run, "started_at"), _get(run, "ended_at")
    duration = (ended - started) if started and ended else None
    return {"id": _get(run, "id"), "name": _get(run, "name", ""), "status": _get(run, "status"),
            "reason": _get(run, "reason", ""), "tags": list(_get(run, "tags", []) or []),
            "created_at": _get(run, "created_at"), "started_at": started, "ended_at": ended,
            "duration_s": duration, "last_step": _get(run, "last_step"),
            "total_steps": _get(run, "total_steps"), "params": _get(run, "params"),
            "device": _get(run, "device", ""), "config": dict(_get(run, "config", {}) or {}),
            "provenance": dict(_get(run, "provenance", {}) or {})}


def configs_json(runs) -> bytes:
    """The runs as a JSON list (see run_info); times are unix seconds."""
    def clean(v):
        # JSON has no nan/inf; a non-finite timing becomes null rather than invalid JSON.
        return None if isinstance(v, float) and not math.isfinite(v) else v
    data = [{k: clean(v) for k, v in run_info(r).items()} for r in runs]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def verdicts_csv(result) -> bytes:
    """The verdict table of an engine.verdicts.Verdicts: one row per group (kind "group":
    n, mean, 95% CI, std, median, range, runs without a value), then one per pair (kind
    "pair": diff, 95% CI, Welch and Holm p, Hedges' g, P(A>B), paired test, verdict line),
    then one per run (kind "run": its group, value or why none, and for a time-to-target
    summary its steps, epochs, examples and seconds to the target). Values in display units
    (accuracy in %)."""
    meta = {"summary": result.summary.text(), "group_by": " · ".join(result.group_by)}
    rows = [{"kind": "group", **meta, **g.row()} for g in result.groups]
    rows += [{"kind": "pair", **meta, **p.row()} for p in result.pairs]
    rows += [{"kind": "run", **meta, **r} for r in result.run_table().to_dict("records")]
    return pd.DataFrame(rows).to_csv(index=False, lineterminator="\n").encode()


def verdicts_json(result) -> bytes:
    """The verdicts as one JSON object (groups with their runs, pairs; see Verdicts.to_dict)."""
    return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2
                        | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def figure_html(fig) -> bytes:
    """A self-contained interactive page that opens offline: plotly.js is embedded once,
    gzip-compressed and base64-encoded (4.8 MB of plotly.js become about 1.9 MB), and the
    browser unpacks it with DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+)
    before drawing the figure's data (already downsampled like the page's). Hovering a line
    or legend entry picks its run out, as on the page (plots.HIGHLIGHT_JS)."""
    title = fig.layout.title.text or "Train Lab comparison"
    page = _HTML_PAGE.format(title=html.escape(title), plotly=_plotly_js_gz_b64(),
                             figure=fig.to_json(), config=json.dumps(
                                 {"displaylogo": False, "responsive": True}),
                             highlight=plots.HIGHLIGHT_JS)
    return page.encode("utf-8")


def plotly_js_packed() -> str:
    """plotly.js as figure_html embeds it (gzip, base64), for a page that draws several
    figures with one copy of it (engine/lessons.py's handout)."""
    return _plotly_js_gz_b64()


@functools.lru_cache(maxsize=1)
def _plotly_js_gz_b64() -> str:
    from plotly.offline import get_plotlyjs
    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), 9, mtime=0)).decode()


_HTML_PAGE = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>{title}</title>
<style>html, body {{ margin: 0; font-family: sans-serif; }} #figure {{ width: 100%; }}</style>
</head>
<body>
<div id="figure">Loading the chart…</div>
<script type="application/octet-stream" id="plotly-gz">{plotly}</script>
<script type="application/json" id="figure-json">{figure}</script>
<script>
(async () => {{
  const packed = Uint8Array.from(atob(document.getElementById("plotly-gz").textContent.trim()),
                                 c => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
  (0, eval)(await new Response(stream).text());      // defines window.Plotly
  const fig = JSON.parse(document.getElementById("figure-json").textContent);
  const div = document.getElementById("figure");
  div.textContent = "";
  Plotly.newPlot(div, fig.data, fig.layout, {config});
}})();
</script>
<script>{highlight}</script>
</body>
</html>
"""


# --- static images -------------------------------------------------------------------------

def browser_path() -> str | None:
    """The Chrome/Chromium binary for static export: $BROWSER_PATH, else /usr/bin/chromium,
    else a chromium/chrome on PATH; None when there is none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    if os.path.isfile(DEBIAN_CHROMIUM) and os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    for exe in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                "chrome"):
        found = shutil.which(exe)
        if found:
            return found
    return None


def static_export_available() -> bool:
    return browser_path() is not None


def _no_browser_error() -> ExportError:
    where = os.environ.get("BROWSER_PATH")
    found = f"BROWSER_PATH={where!r} is not an executable file" if where else \
        f"no Chrome or Chromium found ({DEBIAN_CHROMIUM} is missing and none is on PATH)"
    return ExportError(f"no browser for static PNG/SVG export: {found}. {NO_BROWSER_HINT}")


def _run_async(make_coro):
    """Run a coroutine to completion from sync code, also when the caller's thread already
    runs an event loop (then in a helper thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(make_coro())
        except BaseException as exc:   # handed back to the caller's thread below
            box["error"] = exc
    t = threading.Thread(target=target, name="trainlab-kaleido")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def figure_images(fig, fmts=STATIC_FORMATS, *, width: int | None = None,
                  height: int | None = None) -> dict[str, bytes]:
    """{fmt: bytes} for each of png/svg, all drawn in one browser session (a browser start
    costs about 2 s). Raises ExportError when no browser is available or rendering fails."""
    fmts = [_check_fmt(f) for f in fmts]
    bad = [f for f in fmts if f not in STATIC_FORMATS]
    if bad:
        raise ValueError(f"fmt: {bad[0]!r} is not a static image format; allowed: "
                         + ", ".join(STATIC_FORMATS))
    browser = browser_path()
    if browser is None:
        raise _no_browser_error()
    try:
        import kaleido
    except ImportError as exc:  # pragma: no cover - kaleido is a dependency
        raise ExportError(f"static export needs the kaleido package ({exc}). "
                          + NO_BROWSER_HINT) from None
    fig_dict = fig.to_dict() if hasattr(fig, "to_dict") else dict(fig)
    # WebGL traces would be rasterized inside an SVG and are slow in a GPU-less headless
    # browser; drawn traces hold at most max_points points, so plain SVG paths are fine.
    fig_dict["data"] = [{**t, "type": "scatter"} if t.get("type") == "scattergl" else t
                        for t in fig_dict.get("data", [])]
    w = width or IMAGE_WIDTH
    h = height or (fig_dict.get("layout", {}).get("height") or IMAGE_HEIGHT)

    async def render():
        out = {}
        async with kaleido.Kaleido(n=1, path=browser, mathjax=False,
                                   timeout=RENDER_TIMEOUT_S) as k:
            for f in fmts:
                out[f] = await k.calc_fig(fig_dict, opts=dict(
                    format=f, width=w, height=h, scale=PNG_SCALE if f == "png" else 1))
        return out
    try:
        return _run_async(render)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"static export with the browser {browser} failed: "
                          f"{type(exc).__name__}: {exc}. {NO_BROWSER_HINT}") from exc


def figure_bytes(fig, fmt: str) -> bytes:
    """The figure as a PNG or SVG image (raises ExportError without a browser)."""
    return figure_images(fig, [fmt])[_check_fmt(fmt)]


# --- bundles and the CLI entry ---------------------------------------------------------------

def zip_bytes(fig, frame: pd.DataFrame, runs, *, base: str = "trainlab-compare",
              images: dict | None = None, verdicts=None, table=None) -> bytes:
    """A ZIP of <base>.html, .csv, .json and the .png/.svg images. `images` reuses images
    already drawn; without a browser the images are left out and NO_IMAGES.txt says why.
    With `verdicts` (an engine.verdicts.Verdicts) also <base>-verdicts.csv/.json and the
    strip plot as <base>-strip.html/.png/.svg. With a paper `table` (engine.paper_table.Table)
    also <base>-table.tex/.md/.csv and its bar chart as <base>-bars.html."""
    runs = list(runs)
    members = {f"{base}.html": figure_html(fig),
               f"{base}.csv": metrics_csv(frame, runs, config_columns=True),
               f"{base}.json": configs_json(runs)}
    if table is not None:
        from engine import paper_table
        members.update({f"{base}-table.{ext}": paper_table.render(table, fmt).encode()
                        for fmt, ext in (("latex", "tex"), ("markdown", "md"), ("csv", "csv"))})
        members[f"{base}-bars.html"] = figure_html(paper_table.bar_figure(table))
    images = dict(images or {})
    missing = [f for f in STATIC_FORMATS if f not in images]
    if verdicts is not None:
        from engine.plots import strip_figure
        strip = strip_figure(verdicts)
        members.update({f"{base}-verdicts.csv": verdicts_csv(verdicts),
                        f"{base}-verdicts.json": verdicts_json(verdicts),
                        f"{base}-strip.html": figure_html(strip)})
    if missing or verdicts is not None:
        try:
            if missing:
                images.update(figure_images(fig, missing))
            if verdicts is not None:
                images.update({f"strip.{f}": b for f, b in figure_images(strip).items()})
        except ExportError as exc:
            members["NO_IMAGES.txt"] = (f"The PNG and SVG images were left out: {exc}\n").encode()
    for f in STATIC_FORMATS:
        if f in images:
            members[f"{base}.{f}"] = images[f]
        if f"strip.{f}" in images:
            members[f"{base}-strip.{f}"] = images[f"strip.{f}"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buf.getvalue()


def export_bytes(fmt: str, fig, frame: pd.DataFrame, runs, *, base: str = "trainlab-compare",
                 images: dict | None = None, verdicts=None) -> bytes:
    """The bytes of one export format (used by the Compare page's buttons and export_runs);
    `verdicts` goes into the zip (see zip_bytes)."""
    fmt = _check_fmt(fmt)
    if fmt == "csv":
        return metrics_csv(frame, runs, config_columns=True)
    if fmt == "json":
        return configs_json(runs)
    if fmt == "html":
        return figure_html(fig)
    if fmt in STATIC_FORMATS:
        return (images or {}).get(fmt) or figure_bytes(fig, fmt)
    return zip_bytes(fig, frame, runs, base=base, images=images, verdicts=verdicts)


def export_runs(store, run_ids, fmt: str, *, out_dir=None, name: str | None = None,
                options: plots.ChartOptions | None = None, verdict_by=None,
                summary=None) -> Path:
    """Export stored runs to one file in the export folder and return its path.

    Reads the runs and all their metrics from `store`, builds the comparison figure with
    `options` (default: validation accuracy by step), writes `<name>.<fmt>` (name defaults to
    trainlab-compare-<date>-<time>) through safe_export_path. Unknown run ids or formats raise
    ValueError; a static image without a browser raises ExportError. With `verdict_by` (a
    grouping, see engine.verdicts.group_runs) a zip also holds the verdicts of `summary`
    (default final validation accuracy) and their strip plot.
    """
    fmt = _check_fmt(fmt)
    if isinstance(run_ids, str):
        run_ids = [run_ids]
    run_ids = list(dict.fromkeys(run_ids or []))
    if not run_ids:
        raise ValueError("run_ids: no run given; pass at least one run id")
    runs, unknown = [], []
    for rid in run_ids:
        try:
            record = store.get_run(rid)
        except ValueError:
            record = None
        (runs.append(record) if record is not None else unknown.append(rid))
    if unknown:
        raise ValueError("run_ids: unknown run id(s): " + ", ".join(map(repr, unknown)))
    name = default_name() if name is None else name
    path = safe_export_path(name, fmt, out_dir)          # check the name before any work
    frame = store.read_metrics(run_ids)
    options = dataclasses.replace(options or plots.ChartOptions(), context=True)   # subtitle
    fig = plots.build_figure(frame, runs, options)
    found = None
    if verdict_by:
        from engine import verdicts
        found = verdicts.verdicts(frame, runs, summary or verdicts.Summary(), verdict_by)
    return _write_atomic(path, export_bytes(fmt, fig, frame, runs, base=path.stem,
                                            verdicts=found))
