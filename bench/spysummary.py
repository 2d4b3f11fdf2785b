"""Summarise ``py-spy record -f raw`` files: the functions where a process spends its samples.

Usage: ``python bench/spysummary.py FILE.raw [--top N]``. Prints the top functions by *self* samples
(the frame on top of the stack) and by *total* samples (anywhere on the stack), as % of all samples,
leaving out thread and event-loop plumbing from the latter.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``name (path/to/module.py:12)`` -> ``name (module.py)``: lines merged per function."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    name, path = m.groups()
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


def summarise(path: Path, top: int) -> None:
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        stack, count = m.group(1).split(";"), int(m.group(2))
        total += count
        frames = [_function(f) for f in stack]
        own[frames[-1]] += count
        for f in set(frames):
            anywhere[f] += count
    print(f"{path}: {total:,} samples (with --gil: samples while the process held the GIL)")
    print("  self:")
    for f, n in own.most_common(top):
        print(f"    {n / total:6.1%}  {f}")
    print("  total (on the stack):")
    plumbing = ("(threading.py)", "(asyncio/", "(concurrent/futures", "Worker._guard")
    for f, n in [(f, n) for f, n in anywhere.most_common() if not any(x in f for x in plumbing)][:top]:
        print(f"    {n / total:6.1%}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.files:
        summarise(path, args.top)


if __name__ == "__main__":
    main()
