"""A run in words and colours: the one label, the one config summary, the one palette.

This module owns how a person tells runs apart, everywhere (Live, Compare, Runs, exports, CLI):
- `run_labels(runs)`: the legend label of each run among the runs shown: the config fields
  that differ among them and that apply to the run (`engine.config.applies`: no betas under
  SGD, no width under a CNN), e.g. "adam · layer norm"; the run's name when no field differs.
  Fields are phrased and ordered as the option catalogue says (`config.short_phrase`,
  `config.display_order`); scheduling fields (pack, diagnostics, device, data folder) never
  appear, since they never make runs differ.
- `config_summary(cfg)`: one line of the fields that apply ("mnist · mnist-cnn · adam lr
  0.001 · batch 64 · 5 ep · seed 0": a CNN is never "2x20").
- `common_summary(configs)`: what all runs share (dataset, model, budget): figure subtitles.
- `run_colors(keys, groups)`: one categorical palette, distinct for up to 24 keys, stable per
  key (a run keeps its colour whatever else is shown); the runs of one group (e.g. the seeds
  of one configuration) get shades of their group's hue.
- `legend_lines(labels, width)`: labels fitted to legend entries of `width` characters a
  line, wrapped at their " · " breaks; `common_parts` / `without_parts`: what most runs
  share, left out of long labels (a legend then names it once), so each entry keeps the
  fields where it differs.
Pure: no Streamlit, no store, no plotting library.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from engine import config

PART_SEP = " · "          # between the parts (fields) of a label
ELLIPSIS = "…"            # where parts or characters were left out
LEGEND_MAX_LINES = 2      # lines of one legend entry; a label needing more is cut in the middle


# --- words -------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _defaults() -> dict:
    return config.defaults()


def full_config(cfg: dict | None) -> dict:
    """A stored config with every missing field at its default."""
    return {**_defaults(), **(cfg or {})}


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


def value_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(value_text(v) for v in value) or "default"
    return str(value)


def format_field(name: str, value) -> str:
    """One config field as a person reads it, by its catalogue phrase (config.short_phrase):
    'adam', 'layer norm', 'lr 0.01', 'depth 20'; a choice 'none' or a false switch reads
    'no <words>' ('no norm', 'no residual', 'no shuffle')."""
    words = config.short_label(name)
    if isinstance(value, bool) and words:
        return words if value else f"no {words}"
    if value == "none" and words:
        return f"no {words}"
    return config.short_phrase(name).format(value_text(value))


def differing_fields(configs) -> list[str]:
    """Config fields (config.display_order) whose values differ among the configs to which
    the field applies: momentum differs between two momentum runs, never because an SGD run
    carries another unused value. Scheduling fields (config.SCHEDULING_FIELDS) never count."""
    full = [full_config(c) for c in configs]
    if len(full) < 2:
        return []
    skip = set(config.SCHEDULING_FIELDS)
    names = [n for n in full[0] if n not in skip]
    names += [n for c in full[1:] for n in c if n not in names and n not in skip]
    differ = []
    for n in names:
        values = {json.dumps(c.get(n), sort_keys=True) for c in full if config.applies(n, c)}
        if len(values) > 1:
            differ.append(n)
    return config.display_order(differ)


def labels_from_configs(configs: dict, names: dict | None = None) -> dict:
    """{key: label} of configs shown together (see run_labels). Keys may be run ids or group
    keys; `names` gives the fallback text when no field differs."""
    names = names or {}
    fields = differing_fields(configs.values())
    labels = {}
    for key, cfg in configs.items():
        full = full_config(cfg)
        text = " · ".join(format_field(f, full.get(f)) for f in fields if config.applies(f, full))
        labels[key] = text or names.get(key) or short_id(key)
    counts: dict[str, int] = {}
    for text in labels.values():
        counts[text] = counts.get(text, 0) + 1
    for key, text in labels.items():
        if counts[text] > 1:
            labels[key] = f"{text} #{short_id(key)}"
    return labels


def run_labels(runs) -> dict:
    """{run id: label} for runs shown together (records or dicts with id, name, config):
    the fields that differ among them and apply to the run, joined by ' · '; the run's name
    (else a short id) when nothing differs; a short id added where labels still collide.
    The one label function of Live, Compare, Runs, exports and the CLI."""
    runs = list(runs)
    return labels_from_configs({_get(r, "id"): _get(r, "config") or {} for r in runs},
                               {_get(r, "id"): _get(r, "name", "") or "" for r in runs})


def picker_labels(runs) -> dict:
    """{run id: label} for a list to pick runs from, where many unlike runs sit together: the
    dataset first (when several appear), then run_labels among the runs of that dataset, so
    mixing spirals and Fashion-MNIST runs does not drag every other field into every label."""
    by_dataset: dict = {}
    for r in runs:
        by_dataset.setdefault(full_config(_get(r, "config"))["dataset"], []).append(r)
    out: dict = {}
    for dataset, group in by_dataset.items():
        prefix = f"{dataset} · " if len(by_dataset) > 1 else ""
        out.update({rid: prefix + label for rid, label in run_labels(group).items()})
    return out


def name_list(names) -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c"."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def within_group(group: str, label: str) -> str:
    """A run's label said within its group's: the parts (" · ") the group's name does not
    already say ("seed 0" for "sgd · lr 0.3 · seed 0 · epochs 10" in "sgd · lr 0.3 ·
    epochs 10"); the whole label when every part is the group's or none is."""
    shared = set(group.split(" · "))
    own = [part for part in label.split(" · ") if part not in shared]
    return " · ".join(own) if own and len(own) < len(label.split(" · ")) else label


def short_id(run_id) -> str:
    return str(run_id)[-6:]


def _net(d: dict) -> str:
    if d["model"] == "mlp":
        widths = d["width"]
        return f"mlp {d['depth']}x{widths[0]}" if len(widths) == 1 else \
            f"mlp {'-'.join(map(str, widths))}"
    net = d["model"]
    if config.applies("depth", d):
        net += f" depth {d['depth']}"
    return net + (f" {','.join(map(str, d['channels']))}" if d["channels"] else "")


def _data(d: dict) -> str:
    """"mnist (first 500)": the dataset, and the subset when it keeps fewer examples than the
    dataset has (a toy set of 600 points under a subset of 2,000 is all of it)."""
    pool = d["toy_samples"] if d["dataset"] in config.TOY_DATASETS \
        else config.TRAIN_SIZES.get(d["dataset"], 0)
    cut = d["train_subset"] and d["train_subset"] < pool
    return d["dataset"] + (f" (first {d['train_subset']:,})" if cut else "")


def config_summary(cfg: dict) -> str:
    """One line a teacher reads at a glance: data, network, optimizer, batch, epochs, seed,
    and the options people vary most when they are not at their default. Only options that
    apply to this run's model and optimizer appear."""
    d = full_config(cfg)
    parts = [_data(d), _net(d), d["activation"]]
    if d["norm"] != "none":
        parts.append(f"{d['norm']} norm" + (" (course)" if d["norm_impl"] == "course" else ""))
    if config.applies("residual", d) and d["residual"] != "none":
        parts.append(f"residual {d['residual']}")
    if d["dropout"]:
        parts.append(f"dropout {d['dropout']:g}")
    if d["init"] != "default":
        parts.append(f"init {d['init']}" + (f" {d['weight_scale']:g}"
                                            if config.applies("weight_scale", d) else ""))
    parts.append(f"{d['optimizer']} lr {d['lr']:g}")
    if d["weight_decay"]:
        parts.append(f"wd {d['weight_decay']:g}")
    if d["schedule"] != "constant":
        parts.append(f"{d['schedule']} schedule")
    parts += [f"batch {d['batch_size']}", f"{d['epochs']} ep", f"seed {d['seed']}"]
    return " · ".join(parts)


def common_summary(configs) -> str:
    """What every run shares, for a figure's subtitle: dataset, network and budget (epochs,
    step limit, batch). Parts that differ among the runs are left out."""
    full = [full_config(c) for c in configs]
    if not full:
        return ""

    def same(text_of):
        texts = {text_of(d) for d in full}
        return texts.pop() if len(texts) == 1 else None

    parts = [same(_data), same(_net),
             same(lambda d: f"{d['epochs']} epoch{'s' if d['epochs'] != 1 else ''}"),
             same(lambda d: f"max {d['max_steps']} steps" if d["max_steps"] else ""),
             same(lambda d: f"batch {d['batch_size']}")]
    runs = f"{len(full)} run{'s' if len(full) != 1 else ''}"
    return " · ".join([p for p in parts if p] + [runs])


def common_parts(labels: dict) -> list[str]:
    """The label parts (fields, split at " · ") that more than half of the labels hold, in
    the labels' order: "batch 256" when 18 of 19 runs used it. Only a label's differing
    fields are parts, so these are the values most runs share while a few differ."""
    counts: dict = {}            # in order of first appearance: the fields' display order
    for text in labels.values():
        for part in dict.fromkeys(str(text).split(PART_SEP)):
            counts[part] = counts.get(part, 0) + 1
    return [p for p, n in counts.items() if 2 * n > len(labels) and len(labels) > 2]


def without_parts(labels: dict, parts) -> dict:
    """{key: text}: the labels less these parts (common_parts), so each says only where it
    differs from what most runs share. No two runs read the same: two runs that differ in a
    field cannot both hold its most common value, so one of them still shows it. A label
    made only of such parts keeps them all (it is the common setting)."""
    drop = set(parts)
    out = {}
    for k, text in labels.items():
        kept = [p for p in str(text).split(PART_SEP) if p not in drop]
        out[k] = PART_SEP.join(kept) if kept else str(text)
    return out


def cut_middle(text: str, width: int) -> str:
    """`text` within `width` characters, cut in the middle ("lr 0.1 · l…orm · seed 0"): its
    start and its end (where a run's distinguishing suffix sits) both stay."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = (width - 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (width - 1 - head):]


def wrap_label(text: str, width: int, max_lines: int = LEGEND_MAX_LINES) -> list[str]:
    """A label as at most `max_lines` lines of at most `width` characters, broken after a
    " · " (the break marked by a trailing "·"); a part longer than a line is cut in the
    middle; past max_lines, the first lines and the last are kept, the middle left out."""
    width = max(width, 4)
    if len(text) <= width:
        return [text]
    lines, current = [], ""
    parts = text.split(PART_SEP)
    for i, part in enumerate(parts):
        joined = f"{current}{PART_SEP}{part}" if current else part
        room = width if i == len(parts) - 1 else width - 2    # a " ·" may follow
        if not current or len(joined) <= room:
            current = joined
        else:
            lines.append(current + " ·")
            current = part
    lines.append(current)
    if len(lines) > max_lines:
        # the last line: as many of the last parts as fit after "… · "
        kept = " ".join(lines[:max_lines - 1]).rstrip(" ·").split(PART_SEP)
        tail: list = []
        for part in reversed(parts[len(kept):]):
            if tail and len(PART_SEP.join([ELLIPSIS, part, *tail])) > width:
                break
            tail.insert(0, part)
        lines = lines[:max_lines - 1] + [PART_SEP.join([ELLIPSIS, *tail])]
    return [cut_middle(line, width) for line in lines]


def legend_lines(labels: dict, width: int, max_lines: int = LEGEND_MAX_LINES) -> dict:
    """{key: [line, ...]}: labels as legend entries of at most `max_lines` lines of `width`
    characters (wrap_label). Raw text: escape each line for Plotly (plotly_text) after."""
    return {k: wrap_label(str(t), width, max_lines) for k, t in labels.items()}


# --- colours -------------------------------------------------------------------------------------
# A categorical palette chosen greedily from Okabe-Ito, Paul Tol's and plotly's qualitative
# sets (max-min CIEDE2000 against white-background-visible colours, L* 28..72, chroma >= 20):
# the first 6 are Okabe-Ito's colour-blind-safe set, the first 8 stay >= 12 CIEDE2000 apart
# under simulated deuteranopia and protanopia (Machado 2009); all 24 are >= 12 apart for
# normal vision. tests/engine/test_describe.py computes both.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#750D86",
           "#AF0038", "#6C4516", "#6C7C32", "#DA16FF", "#E45756", "#7E7DCD", "#72B7B2",
           "#AA3377", "#E48F72", "#1CBE4F", "#117733", "#8C564B", "#999933", "#862A16",
           "#109618", "#3283FE", "#FC1CBF")
SHADE_SPREAD_L = 16.0     # CIELAB L* between the lightest and darkest member shade /2


def _slot(key, slots: int) -> int:
    return int(hashlib.sha1(str(key).encode()).hexdigest()[:8], 16) % slots


# Viridis (matplotlib's perceptually uniform, colour-blind-safe sequential scale), 9 anchors;
# colours in between are interpolated in sRGB (close enough to its own interpolation).
VIRIDIS = ("#440154", "#472D7B", "#3B528B", "#2C728E", "#21918C", "#28AE80", "#5EC962",
           "#ADDC30", "#FDE725")


@dataclass
class ValueScale:
    """How values map to colours when runs are coloured by a value: low and high ends, log or
    not, the field or summary named in the colour bar, and whether values were categories."""
    title: str
    low: float
    high: float
    log: bool
    categories: list = field(default_factory=list)   # non-numeric values, in colour order


def viridis(t: float) -> str:
    """The Viridis colour at t in [0, 1]."""
    t = min(max(float(t), 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    a, b = (np.array([int(c.lstrip("#")[j:j + 2], 16) for j in (0, 2, 4)], dtype=float)
            for c in (VIRIDIS[i], VIRIDIS[i + 1]))
    rgb = a + (b - a) * (t - i)
    return "#" + "".join(f"{int(round(v)):02X}" for v in rgb)


def value_colors(values: dict, title: str) -> tuple[dict, ValueScale]:
    """{key: colour} along Viridis by each key's value (a config value or a summary), and the
    scale: numbers on a linear scale, or a log one when all are positive and span at least
    two decades (a learning-rate sweep reads as a gradient); other values (optimizer names)
    as ordered categories spread along the scale. Keys without a value (None, nan) are grey."""
    numeric = {k: float(v) for k, v in values.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and np.isfinite(float(v))}
    if numeric and len(numeric) == len([v for v in values.values() if v is not None]):
        low, high = min(numeric.values()), max(numeric.values())
        log = low > 0 and high / low >= 100
        tr = (lambda v: np.log10(v)) if log else (lambda v: v)
        span = tr(high) - tr(low)
        colors = {k: viridis((tr(numeric[k]) - tr(low)) / span if span else 0.5)
                  if k in numeric else "#999999" for k in values}
        return colors, ValueScale(title, low, high, log)
    categories = sorted({value_text(v) for v in values.values() if v is not None})
    spread = max(len(categories) - 1, 1)
    colors = {k: viridis(categories.index(value_text(v)) / spread) if v is not None
              else "#999999" for k, v in values.items()}
    return colors, ValueScale(title, 0.0, float(spread), False, categories)


def palette_colors(keys) -> dict:
    """A stable palette colour per key: the key's hash picks a slot of the whole palette, so
    the same run or group keeps its colour across reruns and pages, and mostly whatever else
    is shown (only a key whose slot an earlier-sorted key took moves, to the next free slot),
    so up to len(PALETTE) keys shown together never share one. Stability is why a few runs
    do not always get the first (colour-blind-safe) colours."""
    keys = list(dict.fromkeys(keys))
    slots = len(PALETTE)
    taken: set[int] = set()
    out = {}
    for key in sorted(keys, key=str):
        slot = _slot(key, slots)
        if len(taken) < slots:
            while slot in taken:
                slot = (slot + 1) % slots
        taken.add(slot)
        out[key] = PALETTE[slot]
    return {k: out[k] for k in keys}


def run_colors(keys, groups: dict | None = None) -> dict:
    """{key: "#rrggbb"}. Without `groups`, one palette colour per key (palette_colors). With
    groups ({key: group key}, e.g. configs equal but for the seed), each group takes a
    palette colour and its members shades of it (CIELAB lightness spread over ±16 L*, in
    the keys' sorted order), so two seeds of one setting read as one family."""
    keys = list(dict.fromkeys(keys))
    if not groups:
        return palette_colors(keys)
    members: dict = {}
    for k in keys:
        members.setdefault(groups.get(k, k), []).append(k)
    base = palette_colors(members)
    out = {}
    for g, ks in members.items():
        ks = sorted(ks, key=str)
        for k, shade in zip(ks, shades(base[g], len(ks))):
            out[k] = shade
    return {k: out[k] for k in keys}


def group_colors(groups: dict) -> dict:
    """{group name: colour} for groups of runs ({name: [runs]}, e.g. the verdicts' groups),
    matching run_colors over the same runs: a group that is one experiment's seeds (one key
    of seed_groups) takes that experiment's palette colour, the hue its runs' shades
    share on Compare's chart; when a group gathers several experiments (grouped by a field),
    each group takes its own name's colour."""
    keys = {name: set(seed_groups(runs).values()) for name, runs in groups.items()}
    single = {name: next(iter(k)) for name, k in keys.items() if len(k) == 1}
    if len(single) < len(keys) or len(set(single.values())) < len(single):
        return palette_colors(groups)
    base = palette_colors(single.values())
    return {name: base[key] for name, key in single.items()}


def shades(color: str, n: int) -> list[str]:
    """n shades of one colour, darkest first, spread evenly in CIELAB lightness around it."""
    if n <= 1:
        return [color] * n
    lab = hex_to_lab([color])[0]
    out = []
    for o in np.linspace(-SHADE_SPREAD_L, SHADE_SPREAD_L, n):
        L = float(np.clip(lab[0] + o, 15, 85))
        # Out of the sRGB gamut, lower the chroma (never the hue) until the colour fits.
        scale = 1.0
        while scale > 0.05 and not _in_gamut(np.array([L, lab[1] * scale, lab[2] * scale])):
            scale *= 0.95
        out.append(lab_to_hex(np.array([L, lab[1] * scale, lab[2] * scale])))
    return out


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# sRGB (D65) <-> CIELAB, for shades. Matrices from IEC 61966-2-1.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def hex_to_lab(colors) -> np.ndarray:
    rgb = np.array([[int(c.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)] for c in colors])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


def _linear_rgb(lab) -> np.ndarray:
    L, a, b = lab
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    return np.linalg.solve(_RGB_TO_XYZ, xyz)


def _in_gamut(lab) -> bool:
    lin = _linear_rgb(lab)
    return bool(np.all(lin >= -1e-4) and np.all(lin <= 1 + 1e-4))


def lab_to_hex(lab) -> str:
    lin = np.clip(_linear_rgb(lab), 0, 1)
    rgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return "#" + "".join(f"{int(round(v * 255)):02X}" for v in np.clip(rgb, 0, 1))


# --- groups --------------------------------------------------------------------------------

def by_dataset(runs) -> dict[str, list]:
    """{dataset: its runs}, the dataset with the most runs first, ties in the runs' order:
    Compare's figure and Live draw a row per dataset, and a newest one-run dataset's row
    took the first screen from 18 runs'."""
    rows: dict[str, list] = {}
    for r in runs:
        rows.setdefault(full_config(_get(r, "config"))["dataset"], []).append(r)
    return dict(sorted(rows.items(), key=lambda row: -len(row[1])))


def seed_groups(runs) -> dict:
    """{run id: group key} gathering the seeds of one experiment (config.experiment_key:
    equal in everything but the seed and how they were scheduled): for shades."""
    return {_get(r, "id"): config.experiment_key(_get(r, "config") or {}) for r in runs}


def launched_together(records, gap_s: float = 5.0) -> list:
    """The newest launch: the newest run and the runs created before it with no more than
    `gap_s` seconds between one creation and the next (one click on Launch, a grid or
    a CLI loop). Records newest first, as the store lists them."""
    records = sorted(records, key=lambda r: _get(r, "created_at") or 0, reverse=True)
    batch = records[:1]
    for r in records[1:]:
        if (_get(batch[-1], "created_at") or 0) - (_get(r, "created_at") or 0) > gap_s:
            break
        batch.append(r)
    return batch


def plotly_text(text) -> str:
    """User text (a run name, a label built from one) as Plotly draws it: Plotly renders a
    subset of HTML in trace names, hovers and tick labels (<b>, <a href>, <br>), so a name is
    escaped to show exactly as typed. A tag needs "<", so "&" and "<" are escaped and ">"
    is left alone (diff labels read "lr 0.01 -> 0.1"). Every figure escapes its labels
    through this."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


# characters of tick labels a category axis has room for across its whole width (Compare's
# panel, about 760 px of 11-12 px text at 1280x720), and the lines one label may take
CATEGORY_AXIS_CHARS = 110
CATEGORY_MAX_LINES = 4


def category_label(text: str, count: int) -> str:
    """A label for one of `count` categories side by side on a plotly axis (a group under
    its dots or bar): wrapped at " · " to the room each category has, escaped, lines joined
    by <br>, so it stays level; plotly turned long ones sideways, a diagonal band of text
    taller than the plot."""
    # 14 at least: a kept last part ("… · epochs 10") is not cut in its middle
    width = max(14, min(40, CATEGORY_AXIS_CHARS // max(count, 1)))
    return "<br>".join(plotly_text(line)
                       for line in wrap_label(str(text), width, CATEGORY_MAX_LINES))


def plotly_labels(labels: dict) -> dict:
    return {k: plotly_text(v) for k, v in labels.items()}
