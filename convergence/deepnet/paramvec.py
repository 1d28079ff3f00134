"""ParamVec: a list of torch tensors that behaves as one vector, so the rules of
``convergence.methods`` (written with +, -, *, / and ``convergence.vec.norm``/``normalize``) run on
a network's parameters unchanged.

Every operation is one ``torch._foreach_*`` call over all tensors (one fused kernel launch per
dtype/device group on CUDA), never a Python loop doing arithmetic per parameter. Operations are
out of place, as for numpy arrays, so a rule may keep any vector it is given.
"""
from __future__ import annotations

import numbers

import torch


def _scalar(o):
    """A Python number, a 0-d tensor, or the tensor list of a ParamVec; NotImplemented otherwise."""
    if isinstance(o, ParamVec):
        return o.tensors
    if isinstance(o, torch.Tensor):
        if o.dim() != 0:
            raise TypeError("a ParamVec combines with numbers, 0-d tensors and ParamVecs, "
                            f"not a tensor of shape {tuple(o.shape)}")
        return o
    if isinstance(o, bool):
        return NotImplemented
    if isinstance(o, numbers.Integral):
        return int(o)
    if isinstance(o, numbers.Real):
        return float(o)
    return NotImplemented


class ParamVec:
    """A vector stored as a list of tensors (one per parameter), e.g. a gradient of a network."""

    __slots__ = ("tensors",)

    def __init__(self, tensors):
        self.tensors = list(tensors)

    # ------------------------------------------------------------------ arithmetic (out of place)
    def __add__(self, o):
        o = _scalar(o)
        return NotImplemented if o is NotImplemented else ParamVec(torch._foreach_add(self.tensors, o))

    __radd__ = __add__

    def __sub__(self, o):
        o = _scalar(o)
        return NotImplemented if o is NotImplemented else ParamVec(torch._foreach_sub(self.tensors, o))

    def __rsub__(self, o):                       # o - self (o a number or a 0-d tensor)
        o = _scalar(o)
        return NotImplemented if o is NotImplemented else ParamVec(
            torch._foreach_add(torch._foreach_neg(self.tensors), o))

    def __mul__(self, o):
        o = _scalar(o)
        return NotImplemented if o is NotImplemented else ParamVec(torch._foreach_mul(self.tensors, o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = _scalar(o)
        return NotImplemented if o is NotImplemented else ParamVec(torch._foreach_div(self.tensors, o))

    def __neg__(self):
        return ParamVec(torch._foreach_neg(self.tensors))

    # ------------------------------------------------------------------ the two methods vec.py uses
    def norm(self) -> torch.Tensor:
        """Global Euclidean norm over all tensors, as a 0-d tensor (no host synchronisation)."""
        norms = torch._foreach_norm(self.tensors)
        if len({n.dtype for n in norms}) > 1:
            norms = [n.float() for n in norms]
        return torch.linalg.vector_norm(torch.stack(norms))

    def safe_div(self, n) -> "ParamVec":
        """self / n, and exactly 0 where n == 0 (the normalized direction at a stationary point).

        Dividing by +inf instead of 0 keeps one true division (the same rounding as numpy's
        ``np.divide(v, n, where=n > 0)``) and needs no synchronisation with the device.
        """
        if not isinstance(n, torch.Tensor):
            return self / n if n != 0 else 0.0 * self
        return ParamVec(torch._foreach_div(self.tensors, torch.where(n != 0, n, torch.full_like(n, float("inf")))))

    # ------------------------------------------------------------------ helpers
    def dot(self, o: "ParamVec") -> torch.Tensor:
        return torch.dot(self.flat(), o.flat())

    def clone(self) -> "ParamVec":
        return ParamVec(torch._foreach_mul(self.tensors, 1))

    def copy_to(self, tensors) -> None:
        """Write this vector into ``tensors`` in place (e.g. the parameters)."""
        torch._foreach_copy_(list(tensors), self.tensors)

    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors)

    def flat(self) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in self.tensors])

    @classmethod
    def of_params(cls, params) -> "ParamVec":
        """A detached copy of the parameters' current values."""
        with torch.no_grad():
            return cls(torch._foreach_mul([p.detach() for p in params], 1))

    @classmethod
    def zeros_like(cls, tensors) -> "ParamVec":
        return cls([torch.zeros_like(t, memory_format=torch.preserve_format) for t in tensors])

    def __len__(self):
        return len(self.tensors)

    def __repr__(self):
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors[:4])
        more = ", ..." if len(self.tensors) > 4 else ""
        return f"ParamVec({len(self.tensors)} tensors: {shapes}{more})"
