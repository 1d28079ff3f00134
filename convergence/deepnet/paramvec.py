"""ParamVec: a list of torch tensors that behaves as one vector, so the rules of
``convergence.methods`` (written with +, -, *, / and ``convergence.vec.norm``/``normalize``) run on
a network's parameters unchanged.

Linear combinations are lazy: ``x + rho * normalize(g)`` is kept as the terms (1, x), (rho/||g||, g)
and evaluated once, when its tensors are needed, by one ``torch._foreach_mul`` and one in-place
``torch._foreach_add_`` per further term: one new parameter-sized buffer for the whole expression
instead of one per operation (a per-parameter-loop SAM needs two). Every evaluation is a
``torch._foreach_*`` call over all tensors (one fused kernel per dtype/device group on CUDA), never a
Python loop doing arithmetic per parameter. Values are immutable, as numpy arrays are to the rules:
an evaluation writes only into a buffer it allocates (or the one it is given), so a rule may keep any
vector it is given, provided nobody else overwrites the operand tensors (the optimizer owns every
gradient it hands to a rule: see ``optim._owned``).
"""
from __future__ import annotations

import functools
import numbers

import torch


def _coefficient(o):
    """A Python number or a 0-d tensor; NotImplemented for anything that is not a scalar."""
    if isinstance(o, torch.Tensor):
        if o.dim() != 0:
            raise TypeError("a ParamVec combines with numbers, 0-d tensors and ParamVecs, "
                            f"not a tensor of shape {tuple(o.shape)}")
        return o
    if isinstance(o, bool) or not isinstance(o, numbers.Real):
        return NotImplemented
    return int(o) if isinstance(o, numbers.Integral) else float(o)


def _times(a, b):
    """Product of two coefficients, None standing for an exact 1."""
    return b if a is None else a if b is None else a * b


class ParamVec:
    """A vector stored as a list of tensors (one per parameter), e.g. a gradient of a network.

    Internally a sum of terms coefficient * tensors (coefficient None = 1, a number or a 0-d
    tensor); ``tensors`` evaluates the sum once and keeps the result.
    """

    __slots__ = ("_terms", "_tensors")

    def __init__(self, tensors=None, terms=None):
        self._tensors = None if tensors is None else list(tensors)
        self._terms = ((None, self._tensors),) if terms is None else terms

    @property
    def tensors(self) -> list:
        if self._tensors is None:
            self._tensors = _evaluate(self._terms)
            self._terms = ((None, self._tensors),)
        return self._tensors

    @property
    def evaluated(self) -> bool:
        return self._tensors is not None

    def evaluate_into(self, out: list) -> list:
        """Write the value into the existing tensors ``out`` (a buffer reused step after step) and
        return them; this vector keeps no reference to ``out``, so overwriting ``out`` later is safe."""
        return _evaluate(self._terms, out)

    def _scaled(self, c) -> "ParamVec":
        return ParamVec(terms=tuple((_times(a, c), t) for a, t in self._terms))

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o):
        if isinstance(o, ParamVec):
            return ParamVec(terms=_merge(self._terms + o._terms))
        c = _coefficient(o)
        return NotImplemented if c is NotImplemented else ParamVec(torch._foreach_add(self.tensors, c))

    __radd__ = __add__

    def __sub__(self, o):
        if isinstance(o, ParamVec):
            return self + (-o)
        c = _coefficient(o)
        return NotImplemented if c is NotImplemented else self + (-c)

    def __rsub__(self, o):                       # o - self (o a number or a 0-d tensor)
        return -self + o

    def __mul__(self, o):
        if isinstance(o, ParamVec):
            return ParamVec(torch._foreach_mul(self.tensors, o.tensors))
        c = _coefficient(o)
        return NotImplemented if c is NotImplemented else self._scaled(c)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, ParamVec):
            return ParamVec(torch._foreach_div(self.tensors, o.tensors))
        c = _coefficient(o)
        if c is NotImplemented:
            return NotImplemented
        return self._scaled(1 / c if isinstance(c, torch.Tensor) or c != 0 else float("inf"))

    def __neg__(self):
        return self._scaled(-1)

    def __abs__(self):
        return ParamVec(torch._foreach_abs(self.tensors))

    # ------------------------------------------------------------------ the two methods vec.py uses
    def norm(self) -> torch.Tensor:
        """Global Euclidean norm over all tensors, as a 0-d tensor (no host synchronisation), in
        float32 or the widest parameter dtype if wider: a half-precision norm under- or overflows
        (and so would 1/norm), and mixed dtypes keep the precision of the widest."""
        c, tensors = self._terms[0] if len(self._terms) == 1 else (None, self.tensors)
        dtype = functools.reduce(torch.promote_types, {t.dtype for t in tensors}, torch.float32)
        device = tensors[0].device
        norms = [n.to(device) for n in torch._foreach_norm(tensors, 2, dtype=dtype)]
        n = torch.linalg.vector_norm(torch.stack(norms))
        return n if c is None else n * abs(c)

    def safe_div(self, n) -> "ParamVec":
        """self / n, and exactly 0 where n == 0 (the normalized direction at a stationary point);
        no synchronisation with the device."""
        if not isinstance(n, torch.Tensor):
            return self / n if n != 0 else 0.0 * self
        return self._scaled(torch.where(n != 0, n.reciprocal(), torch.zeros_like(n)))

    # ------------------------------------------------------------------ helpers
    def clone(self) -> "ParamVec":
        return ParamVec(torch._foreach_mul(self.tensors, 1))

    def flat(self) -> torch.Tensor:
        """All entries as one 1-D tensor (in the promoted dtype of the tensors)."""
        return torch.cat([t.reshape(-1) for t in self.tensors])

    @staticmethod
    def from_flat(flat: torch.Tensor, like) -> "ParamVec":
        """The inverse of ``flat``: ``flat`` cut into new tensors shaped, typed, placed and laid out
        (channels_last included: fused optimizers pair tensors by memory order) like ``like``."""
        pieces = flat.split([t.numel() for t in like])
        return ParamVec([torch.empty_like(t).copy_(c.view(t.shape)) for c, t in zip(pieces, like)])

    def __repr__(self):
        tensors = self._terms[0][1]
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors[:4])
        more = ", ..." if len(tensors) > 4 else ""
        return f"ParamVec({len(tensors)} tensors: {shapes}{more})"


def _merge(terms) -> tuple:
    """Terms over the same tensor list combined into one (x + c x = (1 + c) x)."""
    merged: dict[int, list] = {}
    for c, t in terms:
        if id(t) in merged:
            a = merged[id(t)][0]
            merged[id(t)][0] = (1 if a is None else a) + (1 if c is None else c)
        else:
            merged[id(t)] = [c, t]
    return tuple((c, t) for c, t in merged.values())


def _evaluate(terms, out=None) -> list:
    """sum_i c_i * T_i into ``out``, or else into one new buffer: the term with a tensor coefficient
    (if any) starts it, the others are added in place (numbers as ``alpha``, no temporaries)."""
    terms = sorted(terms, key=lambda term: not isinstance(term[0], torch.Tensor))
    (c, t), rest = terms[0], terms[1:]
    if out is None:
        out = torch._foreach_mul(t, 1 if c is None else c)
    else:
        torch._foreach_copy_(out, t)
        if c is not None:
            torch._foreach_mul_(out, c)
    for c, t in rest:
        if isinstance(c, torch.Tensor):
            torch._foreach_add_(out, torch._foreach_mul(t, c))
        else:
            torch._foreach_add_(out, t, alpha=1 if c is None else c)
    return out


class PerTensor:
    """One number per tensor of a ParamVec: the radius of each parameter group (``rho * d`` with a
    per-group rho, as the widely used PyTorch SAM scales each group by its own rho)."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = [float(v) for v in values]

    def __mul__(self, v):
        if not isinstance(v, ParamVec):
            return NotImplemented
        return ParamVec(torch._foreach_mul(v.tensors, self.values))

    __rmul__ = __mul__

    def __repr__(self):
        return f"PerTensor({sorted(set(self.values))})"
