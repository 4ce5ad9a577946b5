#!/usr/bin/env python3
"""Draws the benchmark report's figures from the tables of docs/benchmarks.md.

The report's tables are the record (each measured in one run beside Python, with its
command); this script only draws them, so a figure never shows a number the text does not.
Every table row that has a Python figure and a "concur vs Python" ratio becomes one bar.

Usage: python3 bench/plot.py [docs/benchmarks.md] [docs/img]   (needs python3-matplotlib)
"""
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402

RATIO_HEADERS = ("concur / python", "concur vs python", "ratio")
RATIO = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*×")


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(markdown):
    """Yields (section title, header cells, rows) for each table of the report."""
    section, header, rows = "", None, []
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("|"):
            c = cells(line)
            if header is None:
                header = c
            elif not set("".join(c)) <= set("-: "):
                rows.append(c)
            continue
        if header is not None:
            yield section, header, rows
        header, rows = None, []
    if header is not None:
        yield section, header, rows


def speedups(markdown):
    """[(section, label, ratio)] for the rows measured against Python."""
    out = []
    for section, header, rows in tables(markdown):
        lower = [h.lower() for h in header]
        if not any("python" in h for h in lower):
            continue
        col = next((i for i, h in enumerate(lower) if h.replace("`", "") in RATIO_HEADERS), None)
        if col is None:
            continue
        for row in rows:
            if col >= len(row):
                continue
            m = RATIO.search(row[col])
            if m:
                label = row[0].replace("`", "")
                out.append((section, label, float(m.group(1))))
    return out


def short_section(title):
    return re.sub(r"\s*\(.*?\)", "", title)


def draw(points, path):
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable files
    plt.rcParams["svg.hashsalt"] = "concur"  # the same tables give the same file
    labels = [f"{short_section(s)}: {l}" for s, l, _ in points]
    values = [v for _, _, v in points]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(points) + 1.2))
    y = list(range(len(points)))[::-1]
    colours = ["#2a7ab0" if v >= 1 else "#c0392b" for v in values]
    ax.barh(y, values, color=colours)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    for yi, v in zip(y, values):
        ax.text(v * 1.08, yi, f"{v:g}×", va="center", fontsize=7)
    ax.set_xlabel("concur's advantage over Python on the same machine (× , log scale)")
    ax.set_title("concur vs Python's concurrent.futures / multiprocessing / asyncio")
    ax.set_xlim(0.5, max(values) * 3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks.md"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(src), "img")
    with open(src, encoding="utf-8") as f:
        points = speedups(f.read())
    if not points:
        sys.exit(f"{src}: no table rows measured against Python")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "speedup_vs_python.svg")
    draw(points, path)
    print(f"{path}: {len(points)} workloads")


if __name__ == "__main__":
    main()
