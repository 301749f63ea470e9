"""The leak-matrix chart of ``bench/matrix.py``, written as plain SVG (no dependency).

Two horizontal bar panels share the case rows: wall seconds per case (log10 scale) and the
child's peak RSS (log2 scale), one bar per tool, ours above psleak 0.1.6. A green dot
left of a bar means the verdict was right, a red cross that it was wrong; a hatched bar
is a run that was killed at the memory limit or timed out, labelled so. Cases are grouped
by kind. With several repetitions a bar shows the median seconds and the highest peak
RSS, and a case with differing verdicts is labelled "flaky".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

COLORS = {"ours": "#1f6fb4", "theirs": "#e8802a"}
LABELS = {"ours": "psleak (ours)", "theirs": "psleak 0.1.6"}
RIGHT = "#2a9d3a"
WRONG = "#d62728"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

WIDTH = 1500
LABEL_RIGHT = 236  # case names end here
P1 = (262, 770)  # seconds panel, x range
P2 = (860, 1300)  # peak RSS panel, x range (room after it for the notes)
BAR = 6
ROW = 17
KIND_ROW = 20
RSS_TARGET_MIB = 256


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _seconds_label(s: float) -> str:
    return f"{s:g} s"


def _mib_label(mib: float) -> str:
    if mib >= 1024:
        return f"{_num(mib / 1024) if (mib / 1024).is_integer() else f'{mib / 1024:.2f}'} GiB"
    return f"{mib:.0f} MiB"


class LogAxis:
    """Maps a positive value to x on a log scale between two powers of ``base``."""

    def __init__(self, values: Sequence[float], base: float, x0: float, x1: float) -> None:
        vals = [v for v in values if v > 0] or [1.0]
        self.base = base
        self.lo_exp = math.floor(math.log(min(vals), base))
        if math.log(min(vals), base) - self.lo_exp < 0.25:  # keep the shortest bar visible
            self.lo_exp -= 1
        self.hi_exp = math.ceil(math.log(max(vals), base))
        if self.hi_exp <= self.lo_exp:
            self.hi_exp = self.lo_exp + 1
        self.x0, self.x1 = x0, x1

    def x(self, v: float) -> float:
        e = math.log(max(v, self.base**self.lo_exp), self.base)
        return self.x0 + (e - self.lo_exp) / (self.hi_exp - self.lo_exp) * (self.x1 - self.x0)

    def ticks(self, min_gap: float = 58) -> list[float]:
        """Powers of the base, thinned so that labels stay ``min_gap`` pixels apart."""
        per_power = (self.x1 - self.x0) / (self.hi_exp - self.lo_exp)
        step = max(1, math.ceil(min_gap / per_power))
        return [self.base**e for e in range(self.lo_exp, self.hi_exp + 1, step)]


def _aggregate(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One entry per case (in run order) with per-tool median seconds, max RSS, verdicts."""
    cases: dict[str, dict[str, Any]] = {}
    tools: list[str] = []
    for r in data["runs"]:
        c = cases.setdefault(r["case"], {"case": r["case"], "kind": r["kind"], "expect": r["expect"], "tools": {}})
        t = c["tools"].setdefault(r["tool"], {"s": [], "rss": [], "verdicts": [], "correct": []})
        t["s"].append(r["wall_s"])
        t["rss"].append(r["peak_rss_kib"] / 1024)
        t["verdicts"].append(r["verdict"])
        t["correct"].append(r["correct"])
        if r["tool"] not in tools:
            tools.append(r["tool"])
    for c in cases.values():
        for t in c["tools"].values():
            t["median_s"] = statistics.median(t["s"])
            t["max_rss"] = max(t["rss"])
            t["ok"] = all(t["correct"])
            distinct = sorted(set(t["verdicts"]))
            counts = ", ".join(f"{v} x{t['verdicts'].count(v)}" for v in distinct)
            t["verdict"] = distinct[0] if len(distinct) == 1 else f"flaky: {counts}"
            t["stopped"] = any(v.startswith(("killed", "timeout")) for v in t["verdicts"])
    order: list[str] = [t for t in ("ours", "theirs") if t in tools]
    return list(cases.values()), order


def _subtitle(data: dict[str, Any]) -> list[str]:
    lines = []
    for tool, s in data.get("summary", {}).items():
        if not s:
            continue
        lines.append(
            f"{LABELS[tool]}: {s['detected']}/{s['leaks']} leaks detected, "
            f"{len(s['false_positive_cases'])} false positives, {len(s['flaky'])} flaky, "
            f"{s['killed']} killed, {s['timeouts']} timeouts; {_num(s['per_matrix_s'])} s per matrix; "
            f"worst peak RSS {_mib_label(round(s['worst_peak_rss_kib'] / 1024))}"
        )
    ratios = data.get("ratios_ours_theirs") or {}
    if ratios:
        lines.append(
            f"ours / psleak 0.1.6 ({data.get('baseline')}): total time {ratios['time']:.3f}, "
            f"worst peak RSS {ratios['peak_rss']:.3f}"
        )
    return lines


def render(data: dict[str, Any]) -> str:
    """The SVG document for the results ``data`` written by ``bench/matrix.py``."""
    cases, tools = _aggregate(data)
    seconds = [t["median_s"] for c in cases for t in c["tools"].values()]
    rss = [t["max_rss"] for c in cases for t in c["tools"].values()]
    sx = LogAxis(seconds, 10, *P1)
    rx = LogAxis([*rss, RSS_TARGET_MIB], 2, *P2)

    kinds = []
    for c in cases:
        if c["kind"] not in kinds:
            kinds.append(c["kind"])
    subtitle = _subtitle(data)
    legend_y = 58 + 15 * len(subtitle) + 12
    top = legend_y + 46  # first row: below the legend, the panel titles and the tick labels
    bottom = top + len(cases) * ROW + len(kinds) * KIND_ROW
    height = bottom + 70

    m = data.get("machine", {})
    opts = data.get("options", {})
    title = (
        f"Leak matrix: {' vs '.join(LABELS[t] for t in tools)}, {data.get('date', '')[:16].replace('T', ' ')}, "
        f"{m.get('host', '?')} ({m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB)"
    )
    setup = (
        f"{len(cases)} cases, {opts.get('repeat', 1)} repetition(s), one process per case, default settings, "
        f"PYTHONMALLOC={'malloc' if opts.get('pythonmalloc', True) else '(unset)'}, "
        f"memory limit {_num(opts.get('mem_limit', 0) / (1 << 30))} GiB, timeout {_num(opts.get('timeout_s', 0))} s"
    )

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="11">',
        "<defs>",
    ]
    for tool, color in COLORS.items():
        out.append(
            f'<pattern id="hatch-{tool}" width="6" height="6" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{color}" opacity="0.35"/>'
            f'<line x1="0" y1="0" x2="0" y2="6" stroke="{color}" stroke-width="3"/></pattern>'
        )
    out += ["</defs>", f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    out.append(f'<text x="12" y="24" font-size="16" font-weight="bold">{escape(title)}</text>')
    out.append(f'<text x="12" y="42" fill="#444">{escape(setup)}</text>')
    for i, line in enumerate(subtitle):
        out.append(f'<text x="12" y="{58 + 15 * i}" fill="#444">{escape(line)}</text>')

    # legend
    ly = legend_y
    lx = 12
    for tool in tools:
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="14" height="8" fill="{COLORS[tool]}"/>')
        out.append(f'<text x="{lx + 19}" y="{ly}">{escape(LABELS[tool])}</text>')
        lx += 130
    out.append(f'<rect x="{lx}" y="{ly - 8}" width="14" height="8" fill="url(#hatch-{tools[-1]})"/>')
    out.append(f'<text x="{lx + 19}" y="{ly}">killed at the memory limit / timed out</text>')
    lx += 260
    out.append(f'<circle cx="{lx + 4}" cy="{ly - 4}" r="3" fill="{RIGHT}"/>')
    out.append(f'<text x="{lx + 12}" y="{ly}">right verdict</text>')
    lx += 100
    out.append(_cross(lx + 4, ly - 4))
    out.append(f'<text x="{lx + 12}" y="{ly}">wrong verdict (text: what was reported)</text>')
    lx += 260
    out.append(f'<text x="{lx}" y="{ly}" fill="#555">case names: leaks in black, clean cases in grey</text>')

    # panels: titles, grids, ticks (drawn over the row stripes, inserted here later)
    grid_at = len(out)
    stripes: list[str] = []
    for axis, (x0, x1), label, fmt in (
        (sx, P1, "wall seconds per case, process start to exit (log scale)", _seconds_label),
        (rx, P2, "peak RSS of the case's process (ru_maxrss, log scale)", _mib_label),
    ):
        mid = (x0 + x1) / 2
        out.append(f'<text x="{mid}" y="{top - 24}" text-anchor="middle" font-weight="bold">{escape(label)}</text>')
        for v in axis.ticks():
            x = axis.x(v)
            out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
            for y in (top - 9, bottom + 14):
                out.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="#555">{escape(fmt(v))}</text>')
        out.append(f'<line x1="{x0}" y1="{top - 6}" x2="{x0}" y2="{bottom}" stroke="#888"/>')
        out.append(f'<text x="{mid}" y="{bottom + 32}" text-anchor="middle" fill="#333">{escape(label)}</text>')
    tx = rx.x(RSS_TARGET_MIB)
    out.append(
        f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{bottom}" stroke="{WRONG}" '
        f'stroke-dasharray="4 3" stroke-width="1.2"/>'
    )
    out.append(
        f'<text x="{tx + 3:.1f}" y="{bottom + 46}" fill="{WRONG}" text-anchor="middle">'
        f"target: ours at most {RSS_TARGET_MIB} MiB</text>"
    )

    # rows
    y = top
    kind = None
    for n, c in enumerate(cases):
        if c["kind"] != kind:
            kind = c["kind"]
            stripes.append(f'<line x1="12" y1="{y + 1}" x2="{WIDTH - 12}" y2="{y + 1}" stroke="#999"/>')
            out.append(f'<text x="12" y="{y + 14}" font-weight="bold" fill="#333">{escape(kind)}</text>')
            y += KIND_ROW
        if n % 2:
            stripes.append(f'<rect x="12" y="{y}" width="{WIDTH - 24}" height="{ROW}" fill="#f4f4f4"/>')
        name_color = "#000" if c["expect"] else "#555"
        out.append(
            f'<text x="{LABEL_RIGHT}" y="{y + 12}" text-anchor="end" fill="{name_color}">'
            f"{escape(c['case'])}<title>{escape(c['case'])}: expected {escape(c['expect'] or 'clean')}</title></text>"
        )
        for i, tool in enumerate(tools):
            t = c["tools"].get(tool)
            if t is None:
                continue
            by = y + 2 + i * (BAR + 1)
            cy = by + BAR / 2
            out.append(
                f'<circle cx="{P1[0] - 10}" cy="{cy}" r="2.6" fill="{RIGHT}"/>' if t["ok"] else _cross(P1[0] - 10, cy)
            )
            fill = f"url(#hatch-{tool})" if t["stopped"] else COLORS[tool]
            tip = (
                f"{c['case']} under {LABELS[tool]}: {t['verdict']} "
                f"(expected {c['expect'] or 'clean'}), {t['median_s']:.2f} s, {_mib_label(round(t['max_rss']))}"
            )
            for axis, value, x0, room in ((sx, t["median_s"], P1[0], 16), (rx, t["max_rss"], P2[0], 40)):
                w = max(axis.x(value) - x0, 1.0)
                out.append(
                    f'<rect x="{x0}" y="{by}" width="{w:.1f}" height="{BAR}" fill="{fill}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
                note = _note(t, room)
                if note:
                    color = WRONG if not t["ok"] else "#333"
                    out.append(
                        f'<text x="{x0 + w + 4:.1f}" y="{by + BAR}" font-size="8.5" fill="{color}">'
                        f"{escape(note)}</text>"
                    )
        y += ROW
    out[grid_at:grid_at] = stripes
    out.append(f'<line x1="12" y1="{bottom}" x2="{WIDTH - 12}" y2="{bottom}" stroke="#999"/>')
    out.append(
        f'<text x="{WIDTH - 12}" y="{height - 8}" text-anchor="end" fill="#888" font-size="9">'
        f"{escape(m.get('kernel', ''))} {escape(m.get('system', ''))}; bench/matrix.py</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _cross(cx: float, cy: float) -> str:
    d = 2.8
    return (
        f'<path d="M{cx - d:.1f},{cy - d:.1f} L{cx + d:.1f},{cy + d:.1f} M{cx - d:.1f},{cy + d:.1f} '
        f'L{cx + d:.1f},{cy - d:.1f}" stroke="{WRONG}" stroke-width="1.6"/>'
    )


def _note(t: dict[str, Any], room: int) -> str:
    """Text after a bar, at most ``room`` characters: the verdict if wrong or the run was stopped."""
    if t["stopped"] or not t["ok"]:
        v = str(t["verdict"])
        return v if len(v) <= room else v[: room - 1] + "…"
    return ""
