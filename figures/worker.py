"""A run's convergence figure drawn by a helper process started before the run's data exist.

Importing matplotlib and its PDF backend costs a fresh process about 0.6 s (the quickstart: ~3 s).
Started when a run begins, the helper pays that on the second core while the run iterates on the
first, then draws the figure and encodes PNG and PDF side by side (the PDF in a forked child where
os.fork exists) while the run makes the text of its other files. The bytes are those of ``draw``
in-process, which is also the fallback when the helper fails; where this process has already
imported matplotlib, ``draw`` is the cheaper way.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys


def draw(tables, title: str = "", overlays=()) -> dict[str, bytes]:
    """The PNG and PDF bytes of figures.convergence.plot_tables(tables, title, overlays), as laid out."""
    from figures.convergence import encode, plot_tables
    return encode(plot_tables(tables, title, overlays), tight=False)


class FigureWorker:
    """``with FigureWorker() as worker: ...; collect = worker.request(tables, title, overlays)``, and
    later ``collect()`` gives draw()'s bytes; one figure per worker. ``spawn``: start the helper
    (default: unless this process has imported matplotlib.pyplot already, when drawing here costs
    less than a new process). The helper runs in a session of its own: Ctrl-C reaches the run only,
    and ``close`` stops the helper and its forked child together."""

    def __init__(self, spawn: bool | None = None):
        self._proc = None
        if spawn if spawn is not None else "matplotlib.pyplot" not in sys.modules:
            # one BLAS thread: the helper forks, and it has no matrix products worth threads
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            try:
                self._proc = subprocess.Popen([sys.executable, "-m", "figures.worker"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                              start_new_session=True)
            except OSError:                         # no process to be had: draw here
                self._proc = None

    def request(self, tables, title: str = "", overlays=()):
        """Hand the figure to the helper, which draws it while the caller goes on (writing its other
        files); returns the function that waits for draw(tables, title, overlays)'s bytes, drawn here
        if the helper has failed or was not started."""
        sent = False
        if self._proc is not None:
            try:
                self._proc.stdin.write(pickle.dumps((tables, title, overlays)))
                self._proc.stdin.close()
                sent = True
            except Exception:                       # whatever went wrong with the helper: draw here
                pass

        def collect() -> dict[str, bytes]:
            if sent:
                try:
                    with self._proc.stdout as pipe:
                        out = pipe.read()
                    pictures = pickle.loads(out) if self._proc.wait() == 0 else None
                    if isinstance(pictures, dict) and set(pictures) == {"png", "pdf"}:
                        return pictures
                except Exception:                   # as above
                    pass
            return draw(tables, title, overlays)
        return collect

    def close(self) -> None:
        """Stop the helper if it still runs (the run was interrupted or failed), and close its pipes."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL) if hasattr(os, "killpg") else self._proc.kill()
            except ProcessLookupError:              # it ended meanwhile
                pass
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:                         # unsent bytes to a helper that is gone
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _encode_side_by_side(fig) -> dict[str, bytes]:
    """encode(fig, tight=False) with the PDF written by a forked child while this process writes the
    PNG; serial where there is no fork or the child fails."""
    from figures.convergence import encode_as
    if not hasattr(os, "fork"):
        return {ext: encode_as(fig, ext) for ext in ("png", "pdf")}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: the PDF into the pipe, then leave
        os.close(read_end)
        status = 1
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(encode_as(fig, "pdf"))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    png = encode_as(fig, "png")
    with os.fdopen(read_end, "rb") as pipe:
        pdf = pipe.read()
    _, status = os.waitpid(pid, 0)
    return {"png": png, "pdf": pdf if status == 0 and pdf else encode_as(fig, "pdf")}


def _serve() -> None:
    """The helper: import the plotting stack, then draw the one figure read from stdin and write its
    bytes to the original stdout, which nothing else writes to (file descriptor 1 now goes to stderr)."""
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import matplotlib.backends.backend_agg
    import matplotlib.backends.backend_pdf

    from figures.convergence import plot_tables
    tables, title, overlays = pickle.load(sys.stdin.buffer)
    pickle.dump(_encode_side_by_side(plot_tables(tables, title, overlays)), result)
    result.flush()
    os._exit(0)                                     # the caller waits for our exit: skip the teardown


if __name__ == "__main__":
    _serve()
