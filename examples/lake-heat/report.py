"""Step 3 of the lake heat model: a temperature plot (hand-written SVG) and a short report.

Usage: python3 report.py

Reads  results/timeseries.csv, results/summary.json, INPUT_PARAMETERS.txt
Writes report/temperature.svg, report/report.md
"""

import csv
import json
import math
import os
from html import escape

from lakeio import fail, read_parameters

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 40, 50
COLOURS = {"surface_temp": "#d95f02", "bottom_temp": "#1b9e77"}


def nice_ticks(low, high, count=8):
    """About ``count`` round tick values between low and high."""
    span = max(high - low, 1e-9)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = step * math.ceil(low / step - 1e-9)
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 6) for i in range(max(count, 0))]


def svg_plot(days, columns, title):
    """An SVG line chart of each column against the day number."""
    values = [v for series in columns.values() for v in series]
    y_low, y_high = min(values) - 0.5, max(values) + 0.5
    x_low, x_high = min(days), max(max(days), min(days) + 1)

    def x_pos(x):
        return LEFT + (x - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def y_pos(y):
        return HEIGHT - BOTTOM - (y - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for tick in nice_ticks(y_low, y_high):
        y = y_pos(tick)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in nice_ticks(x_low, x_high):
        x = x_pos(tick)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{tick:g}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" '
        f'y2="{HEIGHT - BOTTOM}" stroke="black"/>'
    )
    parts.append(
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>'
    )
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">day</text>')
    parts.append(
        f'<text x="16" y="{HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {HEIGHT / 2})">temperature (deg C)</text>'
    )
    for index, (name, series) in enumerate(columns.items()):
        points = " ".join(
            f"{x_pos(x):.1f},{y_pos(y):.1f}" for x, y in zip(days, series, strict=True)
        )
        colour = COLOURS.get(name, "black")
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        legend_y = TOP + 8 + 16 * index
        parts.append(
            f'<line x1="{WIDTH - 170}" y1="{legend_y}" x2="{WIDTH - 145}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{WIDTH - 140}" y="{legend_y + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    params = read_parameters()
    if not os.path.exists("results/timeseries.csv"):
        fail("results/timeseries.csv is missing: did the simulation run?")
    days, columns = [], {"surface_temp": [], "bottom_temp": []}
    with open("results/timeseries.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            days.append(int(row["day"]))
            for name, series in columns.items():
                series.append(float(row[name]))
    if not days:
        fail("results/timeseries.csv holds no rows")
    with open("results/summary.json", encoding="utf-8") as handle:
        summary = json.load(handle)

    os.makedirs("report", exist_ok=True)
    station = params.get("station", "?")
    title = f"Lake temperature, station {station}, scenario {summary['scenario']}"
    with open("report/temperature.svg", "w", encoding="utf-8") as out:
        out.write(svg_plot(days, columns, title))
    with open("report/report.md", "w", encoding="utf-8") as out:
        out.write(f"# Lake heat budget: station {station}\n\n")
        out.write("| quantity | value |\n| --- | --- |\n")
        for key, value in summary.items():
            out.write(f"| {key} | {value} |\n")
        out.write("\n![Lake temperature](temperature.svg)\n")
    print(f"wrote report/temperature.svg and report/report.md ({len(days)} days)")


if __name__ == "__main__":
    main()
