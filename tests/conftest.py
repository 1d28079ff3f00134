"""Shared fixtures: small instances of every problem, for gradient checks."""
import numpy as np
import pytest

from problems import (LeastSquares, Logistic, Quadratic, Ridge, RobustRegression, Rosenbrock, Saddle,
                      SinPL, StyblinskiTang)


def small_problems():
    """One small instance of each registered problem (finite sums kept tiny for sympy)."""
    return [Quadratic(3, kappa=10.0), SinPL(2), Rosenbrock(3), RobustRegression(3, n=5), Saddle(3),
            StyblinskiTang(2), LeastSquares(3, n=4), Ridge(3, n=4), Logistic(3, n=6)]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """Mark the tests of the deep-net files `torch` and those of test_ray.py `ray`, so that
    `pytest -m "not torch"` and the like select by what a test needs."""
    for item in items:
        name = item.path.name
        if name.startswith("test_deepnet"):
            item.add_marker(pytest.mark.torch)
        elif name == "test_ray.py":
            item.add_marker(pytest.mark.ray)
