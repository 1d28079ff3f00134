"""The user's data for the finite sums: ``.npz`` (arrays A and b), CSV (last column the target),
LIBSVM / svmlight text (kept sparse), or a data set bundled with scikit-learn (``sklearn:NAME``).

Loading is bounded: files above MAX_BYTES are refused before they are read, and data above
MAX_ENTRIES numbers or MAX_DIM features before they are converted (the normal equations and Newton
matrices are dense d x d). Every error is one line that starts with ``data`` (param "data").
"""
from __future__ import annotations

import csv
import math
import sys
import zipfile
from array import array
from pathlib import Path

import numpy as np

from convergence.errors import InputError
from problems.base import one_line

MAX_BYTES = 256 * 2**20       # largest data file read
MAX_ENTRIES = 20_000_000      # n * d stored numbers (nonzeros when sparse): 160 MB of float64
MAX_DIM = 2000                # features: the d x d matrices of the solvers stay below 32 MB
SKLEARN = ("breast_cancer", "diabetes", "digits", "iris", "wine")
SVMLIGHT = (".svm", ".svmlight", ".libsvm")
FORMATS = "use .npz (arrays A and b), .csv (last column the target), .svm/.svmlight/.libsvm, or sklearn:NAME"


def issparse(A) -> bool:
    """A scipy sparse matrix? Asked without importing scipy (~0.15 s): one exists only once scipy.sparse
    is loaded."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(A)


def load_data(spec: str):
    """(A, b, source) read from ``spec`` (a file name or sklearn:NAME); ``source`` names the data in
    later errors. The arrays are checked by ``FiniteSum.from_data`` (``check_data``)."""
    source = f"data '{spec}'"
    if spec.startswith("sklearn:"):
        name = spec[len("sklearn:"):]
        if name not in SKLEARN:
            raise InputError(f"{source} is not a data set bundled with scikit-learn; choose one of: "
                             + ", ".join(f"sklearn:{s}" for s in SKLEARN), "data")
        import sklearn.datasets
        A, b = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        return A, b, source
    path = Path(spec)
    readers = {".npz": _npz, ".csv": _csv, **dict.fromkeys(SVMLIGHT, _svmlight)}
    if path.suffix.lower() not in readers:
        raise InputError(f"{source}: unknown format '{path.suffix}': {FORMATS}", "data")
    if not path.is_file():
        raise InputError(f"{source} is not a file: give an existing file, or sklearn:NAME", "data")
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"{source} has {path.stat().st_size / 2**20:.0f} MiB; at most {MAX_BYTES // 2**20} "
                         f"MiB are read: use a subset of the data", "data")
    return (*readers[path.suffix.lower()](path, source), source)


def _npz(path: Path, source: str):
    try:
        with zipfile.ZipFile(path) as z:
            sizes = {info.filename: info.file_size for info in z.infolist()}
    except zipfile.BadZipFile:
        raise InputError(f"{source} is not an .npz file: write it with numpy.savez(path, A=A, b=b)", "data")
    if not {"A.npy", "b.npy"} <= set(sizes):
        held = ", ".join(n.removesuffix(".npy") for n in sizes) or "nothing"
        raise InputError(f"{source} holds {held}, not the arrays A and b: write it with "
                         f"numpy.savez(path, A=A, b=b)", "data")
    if sizes["A.npy"] + sizes["b.npy"] > 16 * MAX_ENTRIES:       # before decompressing them
        raise InputError(f"{source}: A and b hold more than {MAX_ENTRIES} numbers: use a subset", "data")
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["A"], z["b"]
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{source}: A and b cannot be read ({one_line(err)}): store arrays of "
                         f"numbers", "data")


def _csv(path: Path, source: str):
    """Rows of numbers; a first line without any number is a header. The last column is b."""
    values, width, first = array("d"), None, None
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for line, row in enumerate(csv.reader(fh), 1):
            if not any(cell.strip() for cell in row):
                continue
            if width is None:
                if first is None and not any(_number(cell) is not None for cell in row):
                    first = line                          # the first line holds names: a header
                    continue
                width, first = len(row), line
            if len(row) != width:
                raise InputError(f"{source} line {line} has {len(row)} columns, line {first} has {width}: "
                                 f"give every line the same columns", "data")
            for cell in row:
                number = _number(cell)
                if number is None or not math.isfinite(number):
                    raise InputError(f"{source} line {line} holds '{cell.strip()}', not a finite number: "
                                     f"give numbers only (a first line of column names is allowed)", "data")
                values.append(number)
            if len(values) > MAX_ENTRIES:
                raise InputError(f"{source} holds more than {MAX_ENTRIES} numbers: use a subset", "data")
    if width is None or width < 2:
        raise InputError(f"{source} needs lines of at least two columns (features, then the target), "
                         f"found {'no data' if width is None else 'one column'}", "data")
    M = np.frombuffer(values, dtype=np.float64).reshape(-1, width)
    return M[:, :-1], M[:, -1]


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def _svmlight(path: Path, source: str):
    from sklearn.datasets import load_svmlight_file
    try:
        A, b = load_svmlight_file(str(path), dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{source} is not LIBSVM/svmlight text ({one_line(err)}): each line reads "
                         f"'target index:value index:value ...'", "data")
    return A, b



def check_data(A, b, source: str = "data (A, b)"):
    """(A, b) as float64 arrays, A (n, d) dense or CSR and b (n,), finite and of bounded size; an
    InputError naming ``source``, the fault and its fix otherwise."""
    def fail(msg):
        raise InputError(f"{source}: {msg}", "data")

    if not issparse(A):
        try:
            A = np.asarray(A)
        except ValueError:
            fail("A is not a rectangular array of numbers")
    try:
        b = np.asarray(b)
    except ValueError:
        fail("b is not a 1-d array of numbers")
    for label, M in (("A", A), ("b", b)):
        if M.dtype.kind not in "biuf":
            fail(f"{label} holds {M.dtype} values, not numbers")
    if A.ndim != 2 or b.ndim != 1:
        fail(f"A must be 2-d (n samples x d features) and b 1-d (n targets), got shapes {A.shape} and {b.shape}")
    n, d = A.shape
    if n == 0 or d == 0:
        fail(f"A has shape {A.shape}: it needs at least one sample and one feature")
    if len(b) != n:
        fail(f"b has {len(b)} entries but A has {n} rows: give one target per row")
    if d > MAX_DIM:
        fail(f"{d} features; at most {MAX_DIM} are supported (dense d x d solver matrices): reduce them")
    stored = A.nnz if issparse(A) else A.size
    if stored > MAX_ENTRIES:
        fail(f"A holds {stored} numbers; at most {MAX_ENTRIES} are supported: use a subset")
    A = A.astype(np.float64).tocsr() if issparse(A) else A.astype(np.float64, copy=False)
    values = A.data if issparse(A) else A.ravel()
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row, col = ((np.searchsorted(A.indptr, bad[0], side="right") - 1, A.indices[bad[0]])
                    if issparse(A) else divmod(bad[0], d))
        fail(f"A[{row}, {col}] is {values[bad[0]]}: remove or fill in the missing values")
    b = b.astype(np.float64, copy=False)
    if not np.all(np.isfinite(b)):
        i = int(np.flatnonzero(~np.isfinite(b))[0])
        fail(f"b[{i}] is {b[i]}: remove or fill in the missing values")
    return A, b
