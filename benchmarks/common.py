"""What every benchmark writes: a table on stdout, JSON with the provenance, a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import time
from pathlib import Path

import torch


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """25th, 50th and 75th percentiles."""
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return q[0], statistics.median(samples), q[2]


def provenance() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gloo": torch.distributed.is_gloo_available(),
        "python": platform.python_version(),
        "git_commit": commit,
    }


def format_table(header, rows) -> str:
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(name: str, args, header, table, rows, note: str, out: Path, plot=None) -> Path:
    """Print the table; write out/NAME.json (config, provenance, rows) and out/NAME.png."""
    text = format_table(header, table)
    print(text)
    if note:
        print(note)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"benchmark": name, "config": config, "provenance": provenance(), "rows": rows, "note": note}
    path = out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if plot is not None:
        plot(rows, out / f"{name}.png")
    print(f"wrote {path}" + (f" and {out / (name + '.png')}" if plot else ""))
    return path
