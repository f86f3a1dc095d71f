"""Charts as inline SVG drawn on the server: pictures that need no JavaScript and no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H = 720, 180
PAD_L, PAD_B, PAD_T = 40, 22, 10
COLORS = ("#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#546e7a")


def _axis(max_value: float, labels: Sequence[str], unit: str = "") -> list[str]:
    out = []
    inner_h = H - PAD_B - PAD_T
    for frac in (0, 0.5, 1):
        y = PAD_T + inner_h * (1 - frac)
        value = max_value * frac
        text = f"{value:.0f}" if max_value >= 10 or value == 0 else f"{value:.1f}"
        out.append(
            f'<line x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{text}{unit}</text>'
        )
    step = (W - PAD_L) / max(1, len(labels))
    for i, label in enumerate(labels):
        if i % 3 == 0:
            x = PAD_L + step * (i + 0.5)
            out.append(f'<text x="{x:.1f}" y="{H - 6}" text-anchor="middle">{escape(label)}</text>')
    return out


def stacked_bars(
    series: Sequence[Sequence[float]], names: Sequence[str], labels: Sequence[str], title: str
) -> str:
    """One stacked bar per label; ``series[k][i]`` is series k's value at label i."""
    totals = [sum(s[i] for s in series) for i in range(len(labels))]
    top = max([*totals, 1])
    inner_h = H - PAD_B - PAD_T
    step = (W - PAD_L) / max(1, len(labels))
    parts = _axis(top, labels)
    for i, label in enumerate(labels):
        base = H - PAD_B
        for k, s in enumerate(series):
            h = inner_h * s[i] / top
            if h <= 0:
                continue
            base -= h
            parts.append(
                f'<rect x="{PAD_L + step * i + 1:.1f}" y="{base:.1f}" width="{step - 2:.1f}"'
                f' height="{h:.1f}" fill="{COLORS[k % len(COLORS)]}">'
                f"<title>{escape(label)} {escape(names[k])}: {s[i]:g}</title></rect>"
            )
    return _svg(title, parts, names)


def lines(
    series: Sequence[Sequence[float | None]],
    names: Sequence[str],
    labels: Sequence[str],
    title: str,
) -> str:
    """One polyline per series (None: no point in that bucket)."""
    values = [v for s in series for v in s if v is not None]
    top = max([*values, 1.0])
    inner_h = H - PAD_B - PAD_T
    step = (W - PAD_L) / max(1, len(labels))
    parts = _axis(top, labels, "s")
    for k, s in enumerate(series):
        color = COLORS[(k + 2) % len(COLORS)]
        points = []
        for i, v in enumerate(s):
            if v is None:
                continue
            x = PAD_L + step * (i + 0.5)
            y = H - PAD_B - inner_h * v / top
            points.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(labels[i])} {escape(names[k])}: {v:.2f} s</title></circle>"
            )
        if len(points) > 1:
            parts.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}"'
                ' stroke-width="2"/>'
            )
    return _svg(title, parts, names, offset=2)


GOOD, BAD, WAITING = COLORS[0], COLORS[1], COLORS[3]


def hbar(
    parts_: Sequence[tuple[str, float]],
    title: str,
    width: int = 320,
    colors: Sequence[str] = (GOOD, WAITING, BAD, *COLORS[2:]),
) -> str:
    """One horizontal stacked bar (e.g. delivered / pending / dead of one adapter)."""
    total = sum(v for _, v in parts_) or 1
    x, rects = 0.0, []
    for k, (name, v) in enumerate(parts_):
        w = width * v / total
        if w > 0:
            rects.append(
                f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14"'
                f' fill="{colors[k % len(colors)]}">'
                f"<title>{escape(name)}: {v:g}</title></rect>"
            )
        x += w
    return (
        f'<svg class="hbar" role="img" aria-label="{escape(title)}" width="{width}" height="14"'
        f' viewBox="0 0 {width} 14"><rect width="{width}" height="14" fill="#eceff1"/>'
        + "".join(rects)
        + "</svg>"
    )


def _svg(title: str, parts: list[str], names: Sequence[str], offset: int = 0) -> str:
    legend = "".join(
        f'<span class="key"><svg width="10" height="10" aria-hidden="true"><rect width="10"'
        f' height="10" fill="{COLORS[(k + offset) % len(COLORS)]}"/></svg> {escape(n)}</span>'
        for k, n in enumerate(names)
    )
    return (
        f'<figure class="chart"><figcaption>{escape(title)} {legend}</figcaption>'
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {W} {H}"'
        f' preserveAspectRatio="none">' + "".join(parts) + "</svg></figure>"
    )
