"""The error a user gets for bad input: one line that names the problem and the fix."""
from __future__ import annotations

import difflib


class InputError(ValueError):
    """Bad user input (a CLI prints it as one line and exits with status 2)."""


def unknown(kind: str, name, valid) -> InputError:
    """The error for an unknown name: the closest valid name, then all of them."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"unknown {kind} '{name}'{hint}; choose one of: {', '.join(map(str, valid))}")
