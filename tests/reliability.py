"""Figures from the fault and hostile-input trials, for docs/reliability.md.

Each trial test calls ``record`` once: the line is printed (``pytest -s`` shows it) and, when
``AIRLOCK_RELIABILITY_LOG`` names a file, appended to it as JSON. ``python -m tests.reliability LOG``
turns such a file into the table of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import sys


def record(name: str, trials: int, result: str, figure: str) -> None:
    line = f"[reliability] {name}: {trials} trials, {result}; {figure}"
    print(line)
    path = os.environ.get("AIRLOCK_RELIABILITY_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"name": name, "trials": trials, "result": result, "figure": figure}) + "\n")


def table(lines: list[str]) -> str:
    rows = ["| trial | count | result | figure |", "|---|---|---|---|"]
    for line in lines:
        entry = json.loads(line)
        cells = [entry["name"], str(entry["trials"]), entry["result"], entry["figure"]]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as log:
        print(table([line for line in log if line.strip()]))
