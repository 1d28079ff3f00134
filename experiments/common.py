"""What every CLI shares: one-line errors with exit status 2, number checks, output folders."""
from __future__ import annotations

import _thread
import argparse
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; every flag's help ends with its default unless it states one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and "default" not in text and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS):
            text += " (default %(default)s)"
        return text


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage dump) and exits with status 2; help
    lists every flag's default."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def fail(prog: str, message: str) -> int:
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


class _KeepCtrlC:
    """A sys.unraisablehook that does not lose Ctrl-C: Python only prints ('Exception ignored in') a
    KeyboardInterrupt raised while a finalizer or weakref callback runs, as garbage collection does
    at any moment; SIGINT is sent again instead, once, 10 ms later from a timer thread (sent from
    here, it would interrupt this hook itself), unless the command has ended by then (``active``
    False). Everything else goes to the ``previous`` hook."""

    def __init__(self, previous):
        self.previous, self.active, self.pending = previous, True, False
        self.lock = threading.Lock()

    def __call__(self, unraisable):
        if not (self.active and issubclass(unraisable.exc_type, KeyboardInterrupt)
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            return self.previous(unraisable)
        with self.lock:
            if self.pending:                 # two dropped in a row: one Ctrl-C to send again
                return
            self.pending = True
        again = threading.Timer(0.01, self._again)
        again.daemon = True
        again.start()

    def _again(self):
        with self.lock:
            self.pending = False
            if self.active:
                _thread.interrupt_main(signal.SIGINT)


def guarded(prog: str, main, argv=None) -> int:
    """main(argv) with what escapes it as one line: Ctrl-C -> exit 130 (also when it lands in a
    garbage-collection callback), a full disk or quota -> exit 1 (naming the path), a reader that
    went away (``| head``) -> exit 141 quietly, as a process killed by SIGPIPE (result folders are
    written whole: one stopped so is absent, not half-written). Other errors are bugs and keep their
    traceback."""
    keep_ctrl_c = None
    if threading.current_thread() is threading.main_thread():   # where SIGINT arrives
        sys.unraisablehook = keep_ctrl_c = _KeepCtrlC(sys.unraisablehook)
    try:
        code = main(argv)
        sys.stdout.flush()                    # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; no new result was completed (rerun the same command)\n")
        return 130
    except OSError as err:
        from experiments.results import disk_error
        message = disk_error(err)
        if message is None:
            raise
        sys.stderr.write(f"{prog}: error: {message}\n")
        return 1
    finally:
        if keep_ctrl_c is not None:
            with keep_ctrl_c.lock:
                keep_ctrl_c.active = False
            if sys.unraisablehook is keep_ctrl_c:       # not replaced meanwhile by main itself
                sys.unraisablehook = keep_ctrl_c.previous


def positive(name: str, value, integer: bool = False, allow_zero: bool = False):
    """Check that a flag is a finite positive number (an integer if asked); return it."""
    from convergence.errors import InputError
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "integer" if integer else "number"
        sign = "non-negative" if allow_zero else "positive"
        raise InputError(f"{name} must be a finite {sign} {kind}, got {value}")
    return int(value) if integer else value


def slug(text: str, length: int = 60) -> str:
    """``text`` as part of a folder name: letters, digits and . _ - kept, the rest '_'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:length]


def check_writable(out, flag: str = "--out") -> None:
    """Refuse an --out that cannot be created or written, before any work is done: empty text, a
    device or other existing non-folder, a name longer than the 255 bytes a filesystem takes, or a
    folder where no file can be created (a real file is created and removed in the nearest existing
    folder: os.access trusts root everywhere). Pass the flag's text, not Path(text): Path('') is '.'."""
    from convergence.errors import InputError
    if not str(out).strip():
        raise InputError(f"{flag} is empty: give a folder name")
    out = Path(out)
    for part in out.parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise InputError(f"{flag} has a name of {len(part.encode('utf-8', 'surrogateescape'))} bytes (File name too long: "
                             f"a filesystem takes 255 at most): choose a shorter name")
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"cannot write to {flag} {out}: it exists and is not a folder: choose a folder")
    except OSError as err:
        raise InputError(f"cannot use {flag} {out} ({err.strerror or err}): choose another folder") from None
    probe = out
    try:
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(0, "not a folder")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise InputError(f"cannot write to {flag} {out} ({err.strerror or err}): choose a writable folder") from None


def check_seed(seed) -> int:
    """A seed is an integer in [0, 2^63) (the counter-based streams hash it as 64 bits)."""
    from convergence.errors import InputError
    if not (isinstance(seed, int) and 0 <= seed < 2 ** 63):
        raise InputError(f"--seed must be an integer in [0, 2^63), got {seed}")
    return seed


def add_method_flags(parser) -> None:
    """One flag per hyper-parameter of the rules of convergence.methods, generated from each rule's
    ``hyper`` (its meaning and the paper's default); each is refused for methods that do not take it."""
    from convergence.methods import hyper_parameters
    group = parser.add_argument_group("method options (each applies to the methods named)")
    for name, takers in hyper_parameters().items():
        text = "; ".join(f"{method}: {spec.help} (default {spec.default}; {spec.range})" for method, spec in takers)
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar="VALUE", help=text)


def method_options(args) -> dict:
    """The method options given on the command line, as text (make_method parses and checks them)."""
    from convergence.methods import hyper_parameters
    return {name: getattr(args, name) for name in hyper_parameters() if getattr(args, name, None) is not None}
