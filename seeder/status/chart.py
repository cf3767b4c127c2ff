"""The status page's rate chart: an inline SVG of upload and origin rates (pure).

:func:`render_chart` turns :class:`~seeder.status.history.RatePoint` samples into SVG
markup: a fixed ``viewBox`` that scales to its container, one polyline per series, a
y-axis scaled to a round maximum with labels in bytes/s, time ticks every 15 minutes
(relative to ``now``), a legend, and a ``<title>``/``<desc>`` for screen readers. No
script, no style attribute, no external reference: it renders under a CSP of
``default-src 'none'`` (presentation attributes and classes only; colours come from the
page's stylesheet classes ``up`` and ``origin``). Every text in it is numbers and fixed
words; nothing from an object key is ever drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from seeder.status.history import RatePoint

__all__ = ["human_bytes", "human_rate", "nice_ceiling", "render_chart"]

WIDTH, HEIGHT = 720, 216
LEFT, RIGHT, TOP, BOTTOM = 72, 12, 28, 28  # plot margins, in viewBox units (legend on top)
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``n`` bytes with a binary unit: ``0 B``, ``512 B``, ``1.5 KiB``, ``12 MiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{value:.0f} B"
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(n: float) -> str:
    return human_bytes(n) + "/s"


def nice_ceiling(value: float) -> float:
    """A round axis maximum at least ``value``: 1, 2, 2.5 or 5 times a power of ten of a
    binary unit (KiB, MiB, ...), or 1 of the next unit rather than 1000 of this one; 1024
    for nothing at all (an idle daemon's axis reads 1 KiB/s)."""
    if value <= 1024:
        return 1024.0
    scale = 1024 ** int(math.log(value, 1024))
    mantissa = value / scale  # about 1 to 1024
    step = 10 ** math.floor(math.log10(mantissa))
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= mantissa and m * step < 1000:
            return m * step * scale
    return 1024.0 * scale


def _x(t: float, now: float, window: float) -> float:
    frac = 1.0 - min(max((now - t) / window, 0.0), 1.0)
    return LEFT + frac * (WIDTH - LEFT - RIGHT)


def _y(v: float, top: float) -> float:
    return HEIGHT - BOTTOM - (min(v, top) / top) * (HEIGHT - TOP - BOTTOM)


def _polyline(points: Sequence[RatePoint], attr: str, now: float, window: float,
              top: float, css: str) -> str:
    if not points:
        return ""
    coords = " ".join(
        f"{_x(p.t, now, window):.1f},{_y(getattr(p, attr), top):.1f}" for p in points
    )
    return f'<polyline class="{css}" fill="none" stroke-width="2" points="{coords}"/>'


def render_chart(points: Sequence[RatePoint], now: float, window: float = 3600.0) -> str:
    """SVG markup of ``points`` (oldest first) over the ``window`` seconds ending at ``now``.
    Points outside the window are clamped to its edges; rates above the axis maximum
    cannot occur (the maximum is taken over the points)."""
    peak = max((max(p.upload, p.origin) for p in points), default=0.0)
    top = nice_ceiling(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    last = points[-1] if points else None
    desc = (f"Last: upload {human_rate(last.upload)}, origin {human_rate(last.origin)}."
            if last else "No samples yet.")
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Upload and origin read rates, last hour</title>',
        f'<desc id="chart-desc">{desc} Axis maximum {human_rate(top)}.</desc>',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = HEIGHT - BOTTOM - frac * plot_h
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                   f'y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{human_rate(top * frac)}</text>')
    minutes = int(window // 60)
    for ago in range(0, minutes + 1, 15):
        x = _x(now - ago * 60, now, window)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                   f'y2="{HEIGHT - BOTTOM}"/>')
        label = "now" if ago == 0 else f"-{ago} min"
        anchor = "end" if ago == 0 else "middle"
        out.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" '
                   f'text-anchor="{anchor}">{label}</text>')
    out.append(_polyline(points, "origin", now, window, top, "origin"))
    out.append(_polyline(points, "upload", now, window, top, "up"))
    lx = LEFT
    out.append(f'<rect class="up-key" x="{lx}" y="8" width="14" height="4"/>'
               f'<text class="legend" x="{lx + 20}" y="14">upload</text>')
    out.append(f'<rect class="origin-key" x="{lx + 90}" y="8" width="14" height="4"/>'
               f'<text class="legend" x="{lx + 110}" y="14">origin reads</text>')
    out.append("</svg>")
    return "".join(part for part in out if part)
