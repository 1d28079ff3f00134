"""Shared fixtures and helpers: small instances of every problem, for gradient checks; a command
line's main(argv) called in-process with its exit status and its one stderr line."""
import importlib
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from scipy import sparse

from problems import (LeastSquares, Logistic, Quadratic, Quartic, Ridge, RobustRegression, Rosenbrock, Saddle,
                      Sextic, SinPL, SinPLSquared, StyblinskiTang, make_problem)

LIMIT = 25                      # seconds one CLI case may take (2 shared cores, first imports included)


@contextmanager
def time_bound(seconds: int = LIMIT):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def call(module: str, argv: list[str]) -> int:
    """experiments.<module>.main(argv) -> its exit status (argparse's SystemExit included)."""
    cli = importlib.import_module(f"experiments.{module}")
    try:
        with time_bound():
            return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, lines
    return lines[0]


def with_one_and_two_blas_threads(code: str) -> list[str]:
    """What ``python -c code`` prints with OpenBLAS on one thread and on two (a test of bits that
    must not depend on the thread count)."""
    return [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n}).stdout
            for n in ("1", "2")]


def small_problems():
    """One small instance of each registered problem (finite sums kept tiny for sympy), a formula,
    and finite sums on sparse user data (the sparse code paths of f, grad and the solvers)."""
    A = sparse.random(6, 3, density=0.5, format="csr", random_state=3) + sparse.eye(6, 3, format="csr")
    b = np.random.default_rng(3).standard_normal(6)
    return [Quadratic(3, kappa=10.0), SinPL(2), Rosenbrock(3), RobustRegression(3, n=5), Saddle(3),
            StyblinskiTang(2), LeastSquares(3, n=4), Ridge(3, n=4), Logistic(3, n=6),
            Quartic(3), Sextic(2), SinPLSquared(2),
            make_problem("expr:x1**2 + 3*sin(x1)**2 + x2**4 + x1*x2", box=(-2, 2)),
            make_problem("least_squares", A=A, b=b), make_problem("logistic", A=A, b=np.sign(b))]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """Mark the tests of the deep-net files (and those skipped for want of torch) `torch` and those of
    test_ray.py `ray`, those of test_jax_backend.py `jax`, so that `pytest -m "torch or ray or jax"` runs
    what a pass without the extras skipped."""
    for item in items:
        name = item.path.name
        skips = " ".join(str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
        if name.startswith("test_deepnet") or name == "test_gpu_check.py" or "needs torch" in skips:
            item.add_marker(pytest.mark.torch)
        elif name == "test_ray.py":
            item.add_marker(pytest.mark.ray)
        elif name == "test_jax_backend.py":
            item.add_marker(pytest.mark.jax)
