"""The error a user gets for bad input: one line that names the problem and the fix."""
from __future__ import annotations

import difflib
import re


class InputError(ValueError):
    """Bad user input (a CLI prints it as one line and exits with status 2).

    ``param``, when given, is the run-spec parameter the message starts with ("iters must be a
    positive integer, got 0"); other parameters it mentions are written in backquotes (`stepsize`).
    A CLI names its flags instead (``for_flags``): the core speaks in parameters and only the
    command-line layer knows flags.
    """

    def __init__(self, message: str, param: str | None = None):
        # one line whatever the user typed: control characters (a newline in a schedule) escaped
        message = re.sub(r"[\x00-\x1f\x7f\u2028\u2029\x85]", lambda m: repr(m.group())[1:-1], str(message))
        super().__init__(message)
        self.param = param

    def for_flags(self, flags: dict | None = None) -> str:
        """The message with its parameters replaced by the flags that set them (default ``--param``)."""
        def flag(name):
            return (flags or {}).get(name) or "--" + name.replace("_", "-")
        text = re.sub(r"`([a-z_0-9]+)`", lambda m: flag(m.group(1)), str(self))
        if self.param is not None and text.startswith(self.param):
            text = flag(self.param) + text[len(self.param):]
        return text


def unknown(kind: str, name, valid, param: str | None = None) -> InputError:
    """The error for an unknown name: the closest valid name (case-insensitive), then all of them."""
    valid = [str(v) for v in valid]
    lowered = {v.lower(): v for v in valid}
    close = [lowered[str(name).lower()]] if str(name).lower() in lowered else difflib.get_close_matches(
        str(name).lower(), list(lowered), n=1, cutoff=0.6)
    close = [lowered.get(c, c) for c in close]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"unknown {kind} '{name}'{hint}; choose one of: {', '.join(valid)}", param)
