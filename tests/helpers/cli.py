"""The CLI's error output as the tests check it: one line under `MAX_LINE`, no traceback, holding what it must name."""

from __future__ import annotations

from amt_core.errors import MAX_LINE


def one_error_line(err: str, *fragments: str) -> str:
    """The command's error output, checked to be one line under MAX_LINE with no traceback, holding `fragments`."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert len(line) < MAX_LINE and "Traceback" not in err, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line
