"""The formulas of fhnpde registered as jitable, for the numba kernels (imports numba).

The kernels hold no formulas of their own: the plain-Python functions of
:mod:`fhnpde.models`, :mod:`fhnpde.grid`, :mod:`fhnpde.nonuniform`, :mod:`fhnpde.stimulus`,
:mod:`fhnpde.operators`, :mod:`fhnpde.schemes` and :mod:`fhnpde.refinement` are registered
here, once, and called node by node from the kernel modules beside the solvers
(``fhnpde.solvers.*_numba``, ``fhnpde.reaction_numba``), so numpy and numba compute the same
expressions. Kernel modules are imported through :func:`fhnpde.backends.kernels`, which
caches their compiled code under a fingerprint of the whole package.
"""

from __future__ import annotations

from numba.extending import register_jitable

from . import grid, models, nonuniform, operators, refinement, schemes, stimulus
from .backends import PARALLEL_MIN_NODES as PARALLEL_MIN_NODES  # for the kernel modules

FORMULAS = (
    models.nagumo_reaction,
    models.fitzhugh_reaction,
    models.nagumo_dreaction_dv,
    models.fitzhugh_dreaction_dv,
    models.nagumo_dreaction_dparams,
    models.fitzhugh_dreaction_dparams,
    models.nagumo_recovery,
    models.fitzhugh_recovery,
    models.reaction_by_code,
    models.dreaction_dv_by_code,
    models.dreaction_dparams_by_code,
    models.recovery_by_code,
    grid.second_difference,
    grid.five_point,
    grid.fourth_order_difference,
    grid.nine_point_cross,
    nonuniform.first_derivative,
    nonuniform.second_derivative,
    stimulus.box_active,
    stimulus.boxes_current,
    stimulus.node_currents,
    operators.corner_shift,
    operators.corner_factor,
    schemes.forward_euler_update,
    schemes.forward_euler_node,
    schemes.forward_euler4_node,
    schemes.forward_euler_sheet_node,
    schemes.forward_euler4_sheet_node,
    schemes.adaptive_euler_node,
    schemes.euler_point,
    schemes.rk4_combine,
    schemes.rk4_point,
    schemes.trapezoid_w_affine,
    schemes.newton_guess,
    schemes.newton_error_left,
    schemes.cn_known_part,
    schemes.cn_newton_node,
    schemes.trapezoid_newton_point,
    schemes.staggered_w_step,
    schemes.linear_cn_node,
    refinement.cover_range,
    refinement.balance_strides,
    refinement.grade_active,
    refinement.select_active,
)

for _formula in FORMULAS:
    register_jitable(_formula)


# error_model "numpy": a division by zero gives inf/nan (caught by the Newton checks) instead
# of a Python exception, which keeps the checks out of the loops
JIT_NUMPY_ERRORS = {"cache": True, "error_model": "numpy"}
