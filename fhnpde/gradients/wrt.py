"""What a gradient is taken with respect to: ``wrt`` key paths of a case, checked.

A ``wrt`` entry is a dotted key path of the case, the same that ``--set`` and
:meth:`fhnpde.Case.with_changes` take, naming a number:

- ``model.params.<name>``: a kinetics parameter (``a``, ``eps``, ...; defaults count too);
- ``model.diffusion``;
- ``initial.v`` / ``initial.w`` when a constant, or a field of their profile:
  ``amplitude``, ``base`` (gaussian and box), ``center``, ``width`` (gaussian); on a sheet a
  pair ``center: [x, y]`` or ``width: [wx, wy]`` is named one number at a time,
  ``initial.v.center.0`` (x) and ``initial.v.center.1`` (y);
- ``stimuli.<k>.amplitude``.

A bare kinetics parameter name (``a``) or ``diffusion`` is read as its full path. Anything else
is refused with one :class:`~fhnpde.errors.CaseError` naming the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CaseError, quote

PROFILE_FIELDS = {"gaussian": ("amplitude", "base", "center", "width"),
                  "box": ("amplitude", "base")}

DIFFERENTIABLE = ("model.params.<name>, model.diffusion, initial.v / initial.w (a constant or "
                  "a profile's amplitude, base, center, width) and stimuli.<k>.amplitude")
#: a sheet's gaussian fields that may be pairs [x, y]: each number is named by its index
SHEET_PAIRS = ("center", "width")


@dataclass(frozen=True)
class Target:
    """One ``wrt`` key path: ``kind`` is ``param`` (``name`` the parameter), ``diffusion``,
    ``initial`` (``name`` v or w, ``field`` the profile field or None for a constant) or
    ``stimulus`` (``index`` the box; for ``initial``, the component of a pair field on a
    sheet, 0 along x, 1 along y); ``value`` its value in the case."""

    path: str
    kind: str
    value: float
    name: str | None = None
    field: str | None = None
    index: int | None = None


def _lookup(data: Any, path: str) -> Any:
    node = data
    for i, part in enumerate(path.split(".")):
        where = ".".join(path.split(".")[: i + 1])
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise CaseError(f"is not a key of the case; gradients are taken with respect to "
                            f"{DIFFERENTIABLE}", key=where)
    return node


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return quote(value)


def full_path(case, path: str) -> str:
    """``path`` with a bare kinetics parameter name or ``diffusion`` completed."""
    if not isinstance(path, str) or not path.strip():
        raise CaseError(f"wrt: {quote(path)} is not a key path like model.params.a")
    path = path.strip()
    if "." in path:
        return path
    if path == "diffusion":
        return "model.diffusion"
    from ..models import family

    if path in family(case.model.kinetics).params:
        return f"model.params.{path}"
    return path


def resolve(case, wrt) -> tuple[Target, ...]:
    """The targets of ``wrt`` (key paths, a list or one comma-separated string), checked
    against ``case``: CaseError naming the path when it is not a number the solvers can
    differentiate with respect to."""
    from ..models import Kinetics

    if isinstance(wrt, str):
        wrt = [p for p in wrt.split(",") if p.strip()]
    paths = [full_path(case, p) for p in wrt]
    if not paths:
        raise CaseError(f"wrt is empty; name at least one key path: {DIFFERENTIABLE}")
    seen = {p for p in paths if paths.count(p) > 1}
    if seen:
        raise CaseError("is named twice in wrt; name each key path once", key=sorted(seen)[0])
    data = case.to_dict()
    kinetics = Kinetics.create(case.model.kinetics, dict(case.model.params))
    varied = set(case.ensemble.vary) if case.ensemble is not None else set()
    targets = []
    for path in paths:
        parts = path.split(".")
        if parts[:2] == ["model", "params"] and len(parts) == 3 and parts[2] in kinetics.params:
            name = parts[2]
            if name in varied:
                raise CaseError(f"varies over the ensemble (ensemble.vary.{name}); take "
                                "gradients with respect to a parameter shared by all members",
                                key=path)
            targets.append(Target(path, "param", float(kinetics.params[name]), name=name))
            continue
        value = _lookup(data, path)
        if (parts[0] == "initial" and len(parts) == 3 and parts[2] in ("center", "width")
                and isinstance(value, list)):
            raise CaseError(f"is a pair [x, y] on the sheet; name one of its numbers: {path}.0 "
                            f"(along x) or {path}.1 (along y)", key=path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CaseError(f"is not a number in the case (it is {_what(value)}); gradients are "
                            f"taken with respect to {DIFFERENTIABLE}", key=path)
        if path == "model.diffusion":
            targets.append(Target(path, "diffusion", float(value)))
        elif (parts[0] == "initial" and parts[1] in ("v", "w")
              and (len(parts) in (2, 3) or len(parts) == 4 and parts[2] in SHEET_PAIRS)):
            spec = data["initial"][parts[1]]
            if len(parts) >= 3 and parts[2] not in PROFILE_FIELDS.get(spec["kind"], ()):
                raise CaseError(f"is not differentiable: the fields of a {spec['kind']} profile "
                                "that are, are "
                                + ", ".join(PROFILE_FIELDS.get(spec["kind"], ())), key=path)
            if parts[1] in varied or f"{parts[1]}0" in varied:
                raise CaseError("varies over the ensemble; take gradients with respect to a "
                                "value shared by all members", key=path)
            targets.append(Target(path, "initial", float(value), name=parts[1],
                                  field=parts[2] if len(parts) >= 3 else None,
                                  index=int(parts[3]) if len(parts) == 4 else None))
        elif parts[0] == "stimuli" and len(parts) == 3 and parts[2] == "amplitude":
            targets.append(Target(path, "stimulus", float(value), index=int(parts[1])))
        else:
            raise CaseError(f"is a number, but not one the solvers differentiate with respect "
                            f"to; gradients are taken with respect to {DIFFERENTIABLE}",
                            key=path)
    return tuple(targets)
