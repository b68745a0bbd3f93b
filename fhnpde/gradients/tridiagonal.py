r"""A differentiable tridiagonal solve on torch: :func:`solve` wraps
:func:`fhnpde.tridiagonal.solve` in a custom :class:`torch.autograd.Function`.

For ``A x = b`` with ``A`` tridiagonal (bands ``lower``, ``diag``, ``upper``), the adjoint
``λ = A^{-T} \bar x`` of an output gradient ``\bar x`` gives every input gradient:

.. math::

    \bar b = λ,\qquad \bar A_{ij} = -λ_i x_j \;\Rightarrow\;
    \overline{diag}_i = -λ_i x_i,\quad \overline{lower}_i = -λ_i x_{i-1},\quad
    \overline{upper}_i = -λ_i x_{i+1}

(Giles 2008, *Collected matrix derivative results for forward and reverse mode AD*, §2.3.1).
``A^T`` is tridiagonal again (``lower^T_i = upper_{i-1}``, ``upper^T_i = lower_{i+1}``), so the
backward pass is **one** solve by the same method, not a backpropagation through the
elimination. ``lower[..., 0]`` and ``upper[..., -1]`` are ignored and get zero gradient.

Methods that run on torch tensors (array code: ``cyclic-reduction``) receive them as they
are; host methods (``thomas``, ``scipy``) receive numpy views of CPU tensors. Inside an
autograd Function nothing is recorded, so in-place work in a method is harmless.
"""

from __future__ import annotations

import numpy as np
import torch

from ..tridiagonal import get_method
from ..tridiagonal import solve as _array_solve


def _solve_tensors(lower, diag, upper, rhs, method: str):
    """``fhnpde.tridiagonal.solve`` on tensors (no autograd), returning a tensor."""
    if get_method(method).placement == "host":
        if rhs.device.type != "cpu":
            raise ValueError(f"tridiagonal method {method!r} runs on the CPU, but the tensors "
                             f"are on {rhs.device}; use method='cyclic-reduction'")
        x = _array_solve(*(a.detach().numpy() for a in (lower, diag, upper, rhs)),
                         method=method)
        return torch.from_numpy(np.ascontiguousarray(x))
    return _array_solve(*(a.detach() for a in (lower, diag, upper, rhs)), method=method)


def _reduce(grad, shape):
    """``grad`` summed over the axes along which an input of ``shape`` was broadcast."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    return grad.sum_to_size(shape)


def _pad_before(a):
    """``(0, a[..., :-1])``: the value of row i - 1 at row i."""
    return torch.nn.functional.pad(a[..., :-1], (1, 0))


def _pad_after(a):
    """``(a[..., 1:], 0)``: the value of row i + 1 at row i."""
    return torch.nn.functional.pad(a[..., 1:], (0, 1))


class TridiagonalSolve(torch.autograd.Function):
    """``x = A^{-1} rhs`` forward; one solve with ``A^T`` backward (module docstring)."""

    @staticmethod
    def forward(ctx, lower, diag, upper, rhs, method):
        x = _solve_tensors(lower, diag, upper, rhs, method)
        ctx.method = method
        ctx.shapes = tuple(tuple(a.shape) for a in (lower, diag, upper, rhs))
        ctx.save_for_backward(lower, diag, upper, x)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x):
        lower, diag, upper, x = ctx.saved_tensors
        lower_t = _pad_before(upper)  # A^T's sub-diagonal: upper shifted down one row
        upper_t = _pad_after(lower)  # A^T's super-diagonal: lower shifted up one row
        adjoint = _solve_tensors(lower_t, diag, upper_t, grad_x.contiguous(), ctx.method)
        need = ctx.needs_input_grad
        shapes = ctx.shapes
        grads = [None, None, None, None, None]
        if need[0]:
            grads[0] = _reduce(-adjoint * _pad_before(x), shapes[0])
        if need[1]:
            grads[1] = _reduce(-adjoint * x, shapes[1])
        if need[2]:
            grads[2] = _reduce(-adjoint * _pad_after(x), shapes[2])
        if need[3]:
            grads[3] = _reduce(adjoint, shapes[3])
        return tuple(grads)


def solve(lower, diag, upper, rhs, method: str = "cyclic-reduction"):
    """Differentiable :func:`fhnpde.tridiagonal.solve` of torch tensors (module docstring):
    ``lower``, ``diag``, ``upper``, ``rhs`` broadcast over leading batch axes."""
    tensors = [a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=rhs.dtype)
               for a in (lower, diag, upper)]
    return TridiagonalSolve.apply(*tensors, rhs, method)
