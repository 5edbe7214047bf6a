"""The red-team probes' count lines: each attack test prints one line such as
``probe producer_id_collision: sent 5, recorded 5, dead-lettered 0, lost 0, read by others 0``;
the lines are repeated at the end of the test run (tests/conftest.py) and written to
``red-team.txt`` in pytest's base temporary folder."""

from __future__ import annotations

PROBES: list[str] = []


def probe(name: str, **counts: int) -> str:
    """Record and print one probe's line. Counts are given as keywords, in the order they are to be
    read; underscores become spaces and dashes as written (``dead_lettered`` -> ``dead-lettered``,
    ``read_by_others`` -> ``read by others``)."""
    words = {"dead_lettered": "dead-lettered"}
    parts = [f"{words.get(key, key.replace('_', ' '))} {value}" for key, value in counts.items()]
    line = f"probe {name}: {', '.join(parts)}"
    print(line)
    PROBES.append(line)
    return line
