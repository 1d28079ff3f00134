"""Where the cells of a sweep run: a local process pool (the default) or a Ray cluster.

A backend takes tasks ``Task(key, fn, args, gpu)`` and yields ``(key, ok, value)`` as they finish, in
any order: ``value`` is ``fn(*args)`` when ``ok``, else a one-line description of the failure. The
functions must be importable module-level functions (``experiments.sweep.toy_cell``) that return small
picklable results; the caller writes the files, so no backend needs a shared filesystem for toy
cells.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from convergence.errors import InputError

REPO = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Task:
    key: str
    fn: Callable
    args: tuple
    gpu: bool = False           # ask the scheduler for one GPU (CIFAR cells)


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[-1] if text else type(err).__name__


# ---------------------------------------------------------------- local process pool
def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (kill -9 of a sweep leaves no orphan
    computing; Linux only)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(slots) -> None:
    """Die with the parent and take a slot."""
    die_with_parent()
    if slots is not None:
        os.environ["SAMCONV_SLOT"] = str(slots.get())


def run_local(tasks: list[Task], jobs: int) -> Iterator[tuple[str, bool, Any]]:
    """Run the tasks in ``jobs`` worker processes (in this process when jobs == 1)."""
    if jobs == 1 or len(tasks) <= 1:
        os.environ.setdefault("SAMCONV_SLOT", "0")
        for task in tasks:
            try:
                yield task.key, True, task.fn(*task.args)
            except Exception as err:                       # noqa: BLE001 - reported per cell
                yield task.key, False, _one_line(err)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    for var in THREAD_VARS:           # several processes: one BLAS thread each (README, Performance)
        os.environ.setdefault(var, "1")
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(slots,))
    try:
        futures = {pool.submit(task.fn, *task.args): task.key for task in tasks}
        for future in as_completed(futures):
            key = futures[future]
            try:
                yield key, True, future.result()
            except BrokenProcessPool:
                yield key, False, "a worker process died (killed or out of memory)"
            except Exception as err:                       # noqa: BLE001
                yield key, False, _one_line(err)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- Ray
def ray_module():
    """The ray module, or InputError with the one line that says how to get it."""
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray, which is not installed: "
                         "pip install -e \".[cluster]\" (or pip install \"ray>=2.9\")") from None
    return ray


def _samconv_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version
    try:
        version("samconv")
        return True
    except PackageNotFoundError:
        return False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, with one line, when ``host:port`` (or ``ray://host:port``) does not accept a TCP
    connection: ray.init would otherwise retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return                                   # "auto" and the like: ray decides
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise InputError(f"cannot reach the Ray cluster at {address} ({_one_line(err)}): start it with "
                         f"'ray start --head --port {port}' on {host} or fix --address") from None


def connect_ray(address: str | None, jobs: int | None):
    """Connect to the cluster at ``address`` (or start a local one with ``jobs`` CPUs)."""
    ray = ray_module()
    if address:
        check_reachable(address)
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address:
        kwargs["address"] = address
    elif jobs:
        kwargs["num_cpus"] = jobs
    if not _samconv_installed():    # a source checkout: let the workers import it from here
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path, **{v: "1" for v in THREAD_VARS}}}
    else:
        kwargs["runtime_env"] = {"env_vars": {v: "1" for v in THREAD_VARS}}
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise InputError(f"cannot connect to the Ray cluster at {address or 'a new local instance'}: "
                         f"{_one_line(err)}") from None
    return ray


def run_ray(tasks: list[Task], ray) -> Iterator[tuple[str, bool, Any]]:
    """Submit every task as a Ray task (1 CPU; 1 GPU for ``gpu`` tasks when the cluster has GPUs).

    ``ray``: the module as connect_ray returned it. A task whose worker dies is retried by Ray
    (max_retries=3); a task that raises is reported. Disconnects at the end.
    """
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        remotes = {}
        refs = {}
        for task in tasks:
            remote = remotes.get(task.fn)
            if remote is None:
                remote = remotes[task.fn] = ray.remote(max_retries=3)(task.fn)
            gpus = 1 if task.gpu and has_gpus else 0
            refs[remote.options(num_cpus=1, num_gpus=gpus).remote(*task.args)] = task.key
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                key = refs.pop(ref)
                try:
                    yield key, True, ray.get(ref)
                except Exception as err:                   # noqa: BLE001 - RayTaskError, WorkerCrashedError
                    cause = getattr(err, "cause", None)
                    yield key, False, _one_line(cause if isinstance(cause, BaseException) else err)
    finally:
        ray.shutdown()


def gpu_count() -> int:
    """GPUs on this machine (nvidia-smi), without importing torch; 0 when there are none."""
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


if __name__ == "__main__":            # pragma: no cover
    sys.exit("experiments.backends is a library: use python -m experiments.sweep")
