"""Server-rendered SVG line charts for the dashboard: no JavaScript, nothing fetched from elsewhere."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 24, 22
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Series:
    label: str
    points: Sequence[tuple[datetime, float]]


def line_chart(title: str, series: Sequence[Series], start: datetime, end: datetime,
               fmt: Callable[[float], str], *, time_format: str = "%H:%M",
               marks: Sequence[tuple[str, float]] = ()) -> SafeString:
    """A chart of ``series`` between ``start`` and ``end``; the y axis from 0 to the largest value.

    ``marks``: (label, value) drawn as dashed horizontal lines (thresholds such as a high watermark).
    """
    top = max([v for s in series for _, v in s.points] + [v for _, v in marks], default=0) or 1
    span = (end - start).total_seconds() or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return LEFT + plot_w * min(max((moment - start).total_seconds() / span, 0), 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ops-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="10">{escape(fmt(top))}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10">{start:{time_format}}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" font-size="10">{end:{time_format}}</text>',
    ]
    for label, value in marks:
        parts.append(f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" y2="{y(value):.1f}" stroke="#999" '
                     f'stroke-dasharray="4 3"><title>{escape(label)}</title></line>')
    for n, one in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in sorted(one.points))
        if points:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}">'
                         f'<title>{escape(one.label)}</title></polyline>')
        parts.append(f'<text x="{LEFT + 6 + 150 * (n % 3)}" y="{TOP + 12 + 12 * (n // 3)}" font-size="10" '
                     f'fill="{color}">{escape(one.label)}</text>')
    if not any(s.points for s in series):
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" font-size="11" '
                     f'fill="#777">no history yet (the scheduler writes it)</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every text in it is escaped above)
