"""Small static SVG charts for the leaderboard site, drawn at build time (no script, no network).

Four kinds: grouped bars with confidence whiskers (:func:`grouped_bars`), one bar per item
with its own colour (:func:`colored_bars`), lines with error bars (:func:`line_chart`) and small
multiples of labelled scatter plots with a highlighted front (:func:`pareto_chart`).
Every mark carries a ``<title>`` so hovering it shows the exact numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

STANDARD = "#0072B2"
S_RANDOMIZED = "#D55E00"
SC_RANDOMIZED = "#009E73"
NEUTRAL = "#56B4E9"
INK = "#222"
GRID = "#ddd"
MUTED = "#777"

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 16, 46, 52


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% confidence interval."""

    mean: float
    low: float
    high: float

    def describe(self) -> str:
        """``0.512 [0.498, 0.526]``, or the mean alone when the interval is a point."""
        if self.low == self.high == self.mean:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class BarSeries:
    """One colour of bars in a grouped bar chart: a value (or ``None``) per category."""

    name: str
    color: str
    values: Sequence[Interval | None]


@dataclass(frozen=True)
class LineSeries:
    """A line through ``(x, interval)`` points, drawn with error bars."""

    name: str
    color: str
    points: Sequence[tuple[float, Interval]]


SLACK = 0.05
"""Share of a tick step by which data may overshoot the outer ticks (and is clipped) rather than add a tick."""


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """About ``target`` round ticks covering ``[low, high]`` up to ``SLACK`` of a step; steps 1, 2, 2.5, 5 x 10^k."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + SLACK), math.ceil(high / step - SLACK)
    return [round(k * step, 10) + 0.0 for k in range(first, last + 1)]


class _Frame:
    """Plot area geometry: data coordinates to pixels, plus axes, grid, title and legend."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = _MARGIN_LEFT, width - _MARGIN_RIGHT
        self.y0, self.y1 = height - _MARGIN_BOTTOM, _MARGIN_TOP
        self.x_range, self.y_range = x_range, y_range

    def x(self, value: float) -> float:
        low, high = self.x_range
        return self.x0 + (value - low) / (high - low) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        low, high = self.y_range
        clipped = min(max(value, low), high)
        return self.y0 - (clipped - low) / (high - low) * (self.y0 - self.y1)

    def open(self, title: str, description: str) -> list[str]:
        return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {self.width} {self.height}" '
                f'width="{self.width}" height="{self.height}" role="img" aria-label="{escape(title)}">',
                f"<title>{escape(title)}: {escape(description)}</title>",
                f'<text x="{self.x0}" y="18" class="chart-title" font-weight="bold">{escape(title)}</text>']

    def y_axis(self, ticks: Sequence[float], label: str) -> list[str]:
        parts = []
        for tick in ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
            parts.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
        middle = (self.y0 + self.y1) / 2
        parts.append(f'<text transform="translate(14 {middle:.1f}) rotate(-90)" text-anchor="middle">'
                     f"{escape(label)}</text>")
        parts.append(f'<line x1="{self.x0}" x2="{self.x0}" y1="{self.y0}" y2="{self.y1}" stroke="{INK}"/>')
        parts.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}" stroke="{INK}"/>')
        return parts

    def x_label(self, label: str) -> str:
        return (f'<text x="{(self.x0 + self.x1) / 2:.1f}" y="{self.height - 8}" text-anchor="middle">'
                f"{escape(label)}</text>")

    def reference(self, value: float, label: str) -> list[str]:
        y = self.y(value)
        return [f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{INK}" '
                f'stroke-dasharray="4 3"/>',
                f'<text x="{self.x1 - 2}" y="{y - 4:.1f}" text-anchor="end" class="chart-note">{escape(label)}</text>']

    def legend(self, items: Sequence[tuple[str, str]]) -> list[str]:
        parts, x = [], float(self.x1)
        for name, color in reversed(items):
            x -= 18 + 7 * len(name)
            parts.append(f'<rect x="{x:.1f}" y="26" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text x="{x + 14:.1f}" y="35">{escape(name)}</text>')
        return parts


def grouped_bars(categories: Sequence[str], series: Sequence[BarSeries], *, title: str, y_label: str,
                 y_range: tuple[float, float] = (0.0, 1.0), reference: tuple[float, str] | None = None,
                 width: int = 640, height: int = 300) -> str:
    """Bars grouped by category, one colour per series, each with its CI as a whisker."""
    frame = _Frame(width, height, (0.0, float(max(len(categories), 1))), y_range)
    parts = frame.open(title, f"{', '.join(s.name for s in series)} for {', '.join(categories)}")
    parts += frame.y_axis(nice_ticks(*y_range), y_label)
    slot = (frame.x1 - frame.x0) / max(len(categories), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for i, category in enumerate(categories):
        left = frame.x0 + i * slot + slot * 0.1
        for j, item in enumerate(series):
            value = item.values[i]
            if value is not None:
                parts += _bar(frame, left + j * bar, bar * 0.9, value, item.color, f"{category}, {item.name}")
        parts.append(f'<text x="{frame.x0 + (i + 0.5) * slot:.1f}" y="{frame.y0 + 16}" text-anchor="middle">'
                     f"{escape(category)}</text>")
    if reference is not None:
        parts += frame.reference(*reference)
    parts += frame.legend([(s.name, s.color) for s in series])
    return "\n".join([*parts, "</svg>"])


def colored_bars(labels: Sequence[str], values: Sequence[Interval], colors: Sequence[str], *, title: str,
                 y_label: str, x_label: str, legend: Sequence[tuple[str, str]], width: int = 640,
                 height: int = 260) -> str:
    """One bar per label in its own colour (e.g. one per coordinate), whiskers for the CIs."""
    low = min([0.0, *(v.low for v in values)])
    high = max([0.05, *(v.high for v in values)])
    ticks = nice_ticks(low, high)
    frame = _Frame(width, height, (0.0, float(max(len(labels), 1))), (ticks[0], ticks[-1]))
    parts = frame.open(title, f"{len(labels)} bars")
    parts += frame.y_axis(ticks, y_label)
    slot = (frame.x1 - frame.x0) / max(len(labels), 1)
    every = max(1, math.ceil(len(labels) / 25))
    for i, (label, value, color) in enumerate(zip(labels, values, colors, strict=True)):
        parts += _bar(frame, frame.x0 + i * slot + slot * 0.1, slot * 0.8, value, color, label, base=0.0)
        if i % every == 0:
            parts.append(f'<text x="{frame.x0 + (i + 0.5) * slot:.1f}" y="{frame.y0 + 14}" text-anchor="middle" '
                         f'class="chart-tick">{escape(label.split(" ")[0])}</text>')
    parts.append(frame.x_label(x_label))
    parts += frame.legend(legend)
    return "\n".join([*parts, "</svg>"])


def line_chart(series: Sequence[LineSeries], *, title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] = (0.0, 1.0), width: int = 320, height: int = 260) -> str:
    """Lines with a marker and an error bar at every point; the x axis starts at 0."""
    xs = [x for item in series for x, _ in item.points]
    x_ticks = nice_ticks(0.0, max(xs, default=1.0), target=4)
    frame = _Frame(width, height, (x_ticks[0], x_ticks[-1]), y_range)
    parts = frame.open(title, ", ".join(s.name for s in series))
    parts += frame.y_axis(nice_ticks(*y_range), y_label)
    for tick in x_ticks:
        parts.append(f'<text x="{frame.x(tick):.1f}" y="{frame.y0 + 16}" text-anchor="middle">{_number(tick)}</text>')
    parts.append(frame.x_label(x_label))
    for item in series:
        path = " ".join(f"{'M' if k == 0 else 'L'}{frame.x(x):.1f},{frame.y(v.mean):.1f}"
                        for k, (x, v) in enumerate(item.points))
        parts.append(f'<path d="{path}" fill="none" stroke="{item.color}" stroke-width="2"/>')
        for x, value in item.points:
            cx = frame.x(x)
            parts.append(f'<g><title>{escape(item.name)} at {_number(x)}: {value.describe()}</title>'
                         f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{frame.y(value.low):.1f}" '
                         f'y2="{frame.y(value.high):.1f}" stroke="{item.color}"/>'
                         f'<circle cx="{cx:.1f}" cy="{frame.y(value.mean):.1f}" r="3.5" fill="{item.color}"/></g>')
    if len(series) > 1:
        parts += frame.legend([(s.name, s.color) for s in series])
    return "\n".join([*parts, "</svg>"])


@dataclass(frozen=True)
class ScatterPoint:
    """A labelled point; ``highlight`` points (a Pareto front) are filled and joined, the others hollow."""

    label: str
    x: float
    y: float
    highlight: bool
    detail: str
    """The point's tooltip."""


@dataclass(frozen=True)
class ScatterPanel:
    """One panel of :func:`pareto_chart`: its title, points and an optional horizontal reference line."""

    title: str
    points: Sequence[ScatterPoint]
    reference: tuple[float, str] | None = None


_STANDALONE_FONT = 'font-family="system-ui, Segoe UI, Roboto, Arial, sans-serif" font-size="12" fill="#222"'
_SMALL_FONT = 'font-size="10" fill="#59636e"'
"""Presentation attributes, so the chart reads the same as a file of its own (docs) as on the site, whose
stylesheet sets the same sizes."""

_OVERSHOOT = 0.01
"""A scatter's x axis ends at 1 when no point is further beyond it than this (a score a hair above the ceiling)."""


def pareto_chart(panels: Sequence[ScatterPanel], *, title: str, x_label: str, y_label: str,
                 legend: tuple[str, str, str], columns: int = 3, panel_width: int = 320,
                 panel_height: int = 270) -> str:
    """Small multiples, ``columns`` panels a row: per panel a scatter of labelled points, the highlighted ones
    joined in order of x, and a dashed reference line.

    The x axis of every panel starts at 0 and reaches at least 1 (a normalised score); the y axis
    covers the points and the reference line. Points closer than a few pixels share one label.
    ``legend`` names the highlighted points, the others and the reference line, in that order.
    """
    columns = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    header = 44
    width, height = columns * panel_width, header + rows * panel_height
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart pareto" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" {_STANDALONE_FONT}>',
             f'<rect width="{width}" height="{height}" fill="#fff"/>',
             f"<title>{escape(title)}: {escape(', '.join(panel.title for panel in panels))}</title>",
             f'<text x="{_MARGIN_LEFT}" y="18" class="chart-title" font-size="13" font-weight="bold">'
             f"{escape(title)}</text>"]
    parts += _scatter_legend(legend, _MARGIN_LEFT, 36)
    for k, panel in enumerate(panels):
        left, top = (k % columns) * panel_width, header + (k // columns) * panel_height
        parts.append(f'<g transform="translate({left} {top})">')
        parts += _scatter_panel(panel, panel_width, panel_height, x_label, y_label)
        parts.append("</g>")
    return "\n".join([*parts, "</svg>"])


def _scatter_legend(names: tuple[str, str, str], x: float, y: float) -> list[str]:
    front, other, reference = names
    parts = [f'<circle cx="{x + 5}" cy="{y - 4}" r="4" fill="{STANDARD}"/>',
             f'<text x="{x + 14}" y="{y}">{escape(front)}</text>']
    x += 32 + 7 * len(front)
    parts += [f'<circle cx="{x + 5}" cy="{y - 4}" r="4" fill="#fff" stroke="{MUTED}" stroke-width="1.5"/>',
              f'<text x="{x + 14}" y="{y}">{escape(other)}</text>']
    x += 32 + 7 * len(other)
    parts += [f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{INK}" stroke-dasharray="4 3"/>',
              f'<text x="{x + 24}" y="{y}">{escape(reference)}</text>']
    return parts


def _scatter_panel(panel: ScatterPanel, width: int, height: int, x_label: str, y_label: str) -> list[str]:
    xs = [p.x for p in panel.points]
    ys = [p.y for p in panel.points] + ([panel.reference[0]] if panel.reference else [])
    x_high = max([1.0, *xs])
    x_ticks = nice_ticks(min([0.0, *xs]), 1.0 if x_high <= 1.0 + _OVERSHOOT else x_high, target=4)
    low, high = min(ys, default=0.0), max(ys, default=1.0)
    pad = max(high - low, 0.02) * 0.1
    y_ticks = nice_ticks(low - pad, max(high, min(high + pad, 1.0)), target=4)  # an accuracy: no padding past 1
    frame = _Frame(width, height, (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]))
    parts = [f'<text x="{frame.x0}" y="24" font-weight="bold">{escape(panel.title)}</text>']
    parts += frame.y_axis(y_ticks, y_label)
    for tick in x_ticks:
        parts.append(f'<text x="{frame.x(tick):.1f}" y="{frame.y0 + 16}" text-anchor="middle">{_number(tick)}</text>')
    parts.append(frame.x_label(x_label))
    reserved = []
    if panel.reference is not None:  # dashed, labelled at its right end below the line (points are mostly above)
        y, label = frame.y(panel.reference[0]), panel.reference[1]
        parts += [f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{INK}" '
                  f'stroke-dasharray="4 3"/>',
                  f'<text x="{frame.x1 - 2}" y="{y + 11:.1f}" text-anchor="end" class="chart-note" {_SMALL_FONT}>'
                  f"{escape(label)}</text>"]
        reserved.append((frame.x1 - 2 - 5.6 * len(label), y + 2, frame.x1 - 2, y + 13))
    front = sorted((p for p in panel.points if p.highlight), key=lambda p: (p.x, -p.y))
    if len(front) > 1:
        path = " ".join(f"{'M' if k == 0 else 'L'}{frame.x(p.x):.1f},{frame.y(p.y):.1f}" for k, p in enumerate(front))
        parts.append(f'<path d="{path}" fill="none" stroke="{STANDARD}" stroke-width="1.5"/>')
    for point in panel.points:
        cx, cy = frame.x(point.x), frame.y(point.y)
        mark = (f'fill="{STANDARD}"' if point.highlight else f'fill="#fff" stroke="{MUTED}" stroke-width="1.5"')
        parts.append(f'<g class="point"><title>{escape(point.detail)}</title>'
                     f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" {mark}/></g>')
    parts += _labels(frame, _label_clusters(frame, panel.points), reserved)
    return parts


_LABEL_OFFSETS = (-6.0, 14.0, -17.0, 25.0, -28.0, 36.0, -39.0, 47.0)
"""Baseline offsets (pixels below the point) tried in turn for a label, until it overlaps no label placed before."""


def _labels(frame: _Frame, clusters: list[tuple[tuple[float, float], list[str]]],
            reserved: Sequence[tuple[float, float, float, float]] = ()) -> list[str]:
    """The points' labels, each beside its point (right of it in the left half, left in the right half) at the
    first of :data:`_LABEL_OFFSETS` where it overlaps no earlier label and no ``reserved`` box (left, top, right,
    bottom); a label moved off its point gets a leader."""
    middle = (frame.x0 + frame.x1) / 2
    placed = list(reserved)
    parts = []
    for (cx, cy), labels in clusters:
        text = ", ".join(labels[:3]) + (f" +{len(labels) - 3}" if len(labels) > 3 else "")
        width = 5.6 * len(text)  # about the width of the 10 px tick font
        x = cx + 6 if cx < middle else cx - 6
        left = x if cx < middle else x - width
        boxes = [(dy, (left, cy + dy - 9, left + width, cy + dy + 2)) for dy in _LABEL_OFFSETS]
        fits = [(dy, b) for dy, b in boxes if b[1] >= 28 and b[3] <= frame.y0 + 2 and not _overlaps(b, placed)]
        dy, chosen = (fits or boxes)[0]
        placed.append(chosen)
        if dy not in _LABEL_OFFSETS[:2]:
            parts.append(f'<line x1="{cx:.1f}" x2="{x:.1f}" y1="{cy:.1f}" y2="{cy + dy - 3:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{cy + dy:.1f}" text-anchor="{"start" if cx < middle else "end"}" '
                     f'class="chart-tick" {_SMALL_FONT}>{escape(text)}</text>')
    return parts


def _overlaps(box: tuple[float, float, float, float], others: Sequence[tuple[float, float, float, float]]) -> bool:
    """Whether ``box`` (left, top, right, bottom) overlaps any of ``others``."""
    left, top, right, bottom = box
    return any(left < o_right and o_left < right and top < o_bottom and o_top < bottom
               for o_left, o_top, o_right, o_bottom in others)


def _label_clusters(frame: _Frame, points: Sequence[ScatterPoint],
                    reach: float = 6.0) -> list[tuple[tuple[float, float], list[str]]]:
    """Points within ``reach`` pixels of a cluster's first point join its label, in the order given."""
    clusters: list[tuple[tuple[float, float], list[str]]] = []
    for point in points:
        cx, cy = frame.x(point.x), frame.y(point.y)
        for (x, y), labels in clusters:
            if abs(x - cx) <= reach and abs(y - cy) <= reach:
                labels.append(point.label)
                break
        else:
            clusters.append(((cx, cy), [point.label]))
    return clusters


def _bar(frame: _Frame, left: float, width: float, value: Interval, color: str, label: str,
         base: float | None = None) -> list[str]:
    bottom = frame.y(frame.y_range[0] if base is None else base)
    top = frame.y(value.mean)
    y, height = min(top, bottom), abs(bottom - top)
    centre = left + width / 2
    parts = [f'<g><title>{escape(label)}: {value.describe()}</title>',
             f'<rect x="{left:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{color}"/>']
    if value.high > value.low:
        parts.append(f'<line x1="{centre:.1f}" x2="{centre:.1f}" y1="{frame.y(value.low):.1f}" '
                     f'y2="{frame.y(value.high):.1f}" stroke="{INK}"/>')
    parts.append("</g>")
    return parts


def _number(value: float) -> str:
    return f"{value:.10g}" if abs(value) >= 1e-9 else "0"
