"""The error a user gets for bad input: one line that names the problem and the fix."""
from __future__ import annotations

import difflib


class InputError(ValueError):
    """Bad user input (a CLI prints it as one line and exits with status 2).

    ``param``, when given, is the run-spec parameter the message starts with ("iters must be a
    positive integer, got 0"); a CLI names its flag instead (``for_flags``), so the core speaks in
    parameters and only the command-line layer knows flags.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def for_flags(self, flags: dict | None = None) -> str:
        """The message with its parameter replaced by the flag that sets it (default ``--param``)."""
        text = str(self)
        if self.param is None or not text.startswith(self.param):
            return text
        flag = (flags or {}).get(self.param) or "--" + self.param.replace("_", "-")
        return flag + text[len(self.param):]


def unknown(kind: str, name, valid, param: str | None = None) -> InputError:
    """The error for an unknown name: the closest valid name (case-insensitive), then all of them."""
    valid = [str(v) for v in valid]
    lowered = {v.lower(): v for v in valid}
    close = [lowered[str(name).lower()]] if str(name).lower() in lowered else difflib.get_close_matches(
        str(name).lower(), list(lowered), n=1, cutoff=0.6)
    close = [lowered.get(c, c) for c in close]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"unknown {kind} '{name}'{hint}; choose one of: {', '.join(valid)}", param)
