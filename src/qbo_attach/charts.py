"""Small SVG charts drawn by hand, for a report that opens without a network.

Each function returns one ``<svg>`` element as text, sized by its viewBox so
it scales with the page. Every label is escaped here; callers pass plain
strings and numbers. A chart with nothing to draw is the caller's business:
these functions expect at least one non-empty row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 760
LABEL_WIDTH = 180
ROW_HEIGHT = 26
ROW_GAP = 8
FONT = 12


@dataclass(frozen=True, slots=True)
class Series:
    """One coloured part of a stacked bar, named in the legend."""

    name: str
    color: str


def _svg(height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
        f'font-size="{FONT}"{klass}>{escape(text)}</text>'
    )


def _rect(x: float, y: float, width: float, height: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'fill="{color}"><title>{escape(tip)}</title></rect>'
    )


def _legend_width(name: str) -> int:
    # Room for the square, the name at about 7.5 pixels a letter, and a gap.
    return 36 + round(7.5 * len(name))


def _legend(series: Sequence[Series], y: float) -> list[str]:
    """Coloured squares with names, wrapped onto as many lines as needed."""
    parts: list[str] = []
    x = float(LABEL_WIDTH)
    for item in series:
        width = _legend_width(item.name)
        if x + width > WIDTH:
            x, y = float(LABEL_WIDTH), y + 18
        parts.append(_rect(x, y - 10, 12, 12, item.color, item.name))
        parts.append(_text(x + 16, y, item.name))
        x += width
    return parts


def _legend_height(series: Sequence[Series]) -> int:
    lines, x = 1, LABEL_WIDTH
    for item in series:
        width = _legend_width(item.name)
        if x + width > WIDTH:
            lines, x = lines + 1, LABEL_WIDTH
        x += width
    return lines * 18 + 8


def stacked_bars(
    title: str, series: Sequence[Series], rows: Sequence[tuple[str, Sequence[int]]]
) -> str:
    """Horizontal bars, one per row, split into the series' parts.

    Each row gives its label and one count per series, in the series' order;
    bars share one scale so their lengths compare.
    """
    top = _legend_height(series) + 6
    height = top + len(rows) * (ROW_HEIGHT + ROW_GAP)
    scale = (WIDTH - LABEL_WIDTH - 70) / max(max(sum(c) for _, c in rows), 1)
    body = _legend(series, 14)
    for index, (label, counts) in enumerate(rows):
        y = top + index * (ROW_HEIGHT + ROW_GAP)
        body.append(_text(LABEL_WIDTH - 8, y + 17, label, "end"))
        x = float(LABEL_WIDTH)
        for item, count in zip(series, counts, strict=True):
            if count:
                tip = f"{label}: {item.name} {count:,}"
                body.append(_rect(x, y, count * scale, ROW_HEIGHT, item.color, tip))
                x += count * scale
        body.append(_text(x + 6, y + 17, f"{sum(counts):,}", cls="value"))
    return _svg(height, title, body)


def bars(title: str, color: str, rows: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars with their value at the end, for ranked counts."""
    height = len(rows) * (ROW_HEIGHT + ROW_GAP) + ROW_GAP
    scale = (WIDTH - LABEL_WIDTH - 70) / max(max(n for _, n in rows), 1)
    body: list[str] = []
    for index, (label, count) in enumerate(rows):
        y = ROW_GAP + index * (ROW_HEIGHT + ROW_GAP)
        shown = label if len(label) <= 26 else label[:25] + "…"
        body.append(_text(LABEL_WIDTH - 8, y + 17, shown, "end"))
        body.append(_rect(LABEL_WIDTH, y, count * scale, ROW_HEIGHT, color, label))
        body.append(_text(LABEL_WIDTH + count * scale + 6, y + 17, f"{count:,}"))
    return _svg(height, title, body)


def columns(title: str, color: str, rows: Sequence[tuple[str, int]], axis: str) -> str:
    """Vertical bars side by side, as for a histogram; ``axis`` names the x axis."""
    height, base, left = 260, 210, 50
    slot = (WIDTH - left) / len(rows)
    scale = (base - 30) / max(max(n for _, n in rows), 1)
    body = [f'<line x1="{left}" y1="{base}" x2="{WIDTH}" y2="{base}" class="axis"/>']
    for index, (label, count) in enumerate(rows):
        x = left + index * slot
        bar = count * scale
        body.append(
            _rect(x + 6, base - bar, slot - 12, bar, color, f"{label}: {count:,}")
        )
        body.append(_text(x + slot / 2, base - bar - 5, f"{count:,}", "middle"))
        body.append(_text(x + slot / 2, base + 16, label, "middle"))
    body.append(_text(WIDTH / 2, base + 40, axis, "middle", "axis-title"))
    return _svg(height, title, body)


def line(title: str, color: str, points: Sequence[tuple[str, int]], axis: str) -> str:
    """A line through evenly spaced points, labelled at both ends and the peak."""
    height, base, left, right = 240, 190, 50, 20
    peak = max(max(n for _, n in points), 1)
    step = (WIDTH - left - right) / max(len(points) - 1, 1)
    scale = (base - 30) / peak

    def xy(index: int, value: int) -> tuple[float, float]:
        return left + index * step, base - value * scale

    coords = " ".join(
        "{:.1f},{:.1f}".format(*xy(i, n)) for i, (_, n) in enumerate(points)
    )
    body = [
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - right}" y2="{base}" '
        'class="axis"/>',
        f'<line x1="{left}" y1="{base - peak * scale:.1f}" x2="{WIDTH - right}" '
        f'y2="{base - peak * scale:.1f}" class="grid"/>',
        _text(left - 6, base - peak * scale + 4, f"{peak:,}", "end"),
        _text(left - 6, base + 4, "0", "end"),
        f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>',
    ]
    if len(points) <= 60:
        for index, (label, count) in enumerate(points):
            x, y = xy(index, count)
            tip = f"{label}: {count:,}"
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    body.append(_text(left, base + 18, points[0][0]))
    if len(points) > 1:
        body.append(_text(WIDTH - right, base + 18, points[-1][0], "end"))
    body.append(_text(WIDTH / 2, base + 40, axis, "middle", "axis-title"))
    return _svg(height, title, body)
