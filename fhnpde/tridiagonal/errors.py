"""The error a non-pivoting tridiagonal solver raises instead of returning garbage."""

from __future__ import annotations

import math


class PivotError(ArithmeticError):
    """A pivot of the elimination is zero or not finite.

    Thomas's algorithm and cyclic reduction do not pivot; they are stable for diagonally
    dominant (or symmetric positive definite) matrices, which is what diffusion operators give.
    A zero, infinite or NaN pivot means the matrix is singular, not diagonally dominant, or
    holds NaN/inf coefficients.

    Attributes
    ----------
    method : the tridiagonal method that failed (``"thomas"``, ...).
    system : the index of the failing system in the broadcast batch (``()`` for one system).
    row : the row (0-based, in the original numbering) whose pivot failed, or None.
    value : the pivot's value (0.0, inf or nan), or None when unknown.
    """

    def __init__(
        self,
        method: str,
        system: tuple[int, ...],
        row: int | None,
        value: float | None,
        *,
        detail: str = "",
        hint: str | None = None,
    ) -> None:
        self.method = method
        self.system = tuple(int(i) for i in system)
        self.row = None if row is None else int(row)
        self.value = None if value is None else float(value)
        where = f"row {self.row}" if self.row is not None else "some row"
        if self.system:
            where += f" of system {self.system} of the batch"
        if self.value is None:
            what = "zero or non-finite pivot"
        elif self.value == 0.0:
            what = "zero pivot"
        elif math.isnan(self.value):
            what = "NaN pivot"
        else:
            what = f"non-finite pivot ({self.value})"
        hint = hint or (
            "the matrix is probably not diagonally dominant (or is singular, or holds NaN/inf "
            "coefficients); this method does not pivot, so use a diagonally dominant matrix or "
            "method='scipy' (LAPACK gtsv, partial pivoting)"
        )
        if detail:
            hint = f"{detail}; {hint}"
        super().__init__(f"tridiagonal solve ({method}): {what} at {where}: {hint}")

    def __reduce__(self):  # keep the exception picklable (multiprocessing, pytest-xdist)
        return (_rebuild, (self.method, self.system, self.row, self.value, self.args))


def _rebuild(method, system, row, value, args):
    err = PivotError.__new__(PivotError)
    err.method, err.system, err.row, err.value = method, system, row, value
    err.args = args
    return err
