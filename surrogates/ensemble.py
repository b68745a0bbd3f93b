"""Many DDNNs or PINNs of Problem A trained at once, as one batched ensemble.

A study that trains the same architecture on many seeds (the data-scarcity study) spends
most of its time in tiny matrix products; stacking the members' weights into tensors of
shape (E, out, in) and training all of them with one ``torch.einsum`` per layer makes
E trainings cost little more than one on a single CPU thread.

Every member is exactly the network a single training would build: it starts from a
:class:`surrogates.models.Surrogate` (its initial weights, its normalisation fitted to its
own training targets) and goes back to one (:meth:`BatchedMLP.to_surrogates`). The loss
of the ensemble is the *sum* of the members' losses, so member j's gradient is the
gradient of its own loss; Adam acts element by element, so one Adam over the stacked
tensors is E independent Adams. The members' losses are those of :mod:`surrogates.train`
for Problem A (inputs ``[t]``):

- data: mean over points and both outputs of ((u - y) / out_scale)^2,
- physics (PINN): mean of (r / F_scale)^2 with r = du/dt - F(u, I) at collocation times,
  F_scale the std of F over the member's training targets,
- initial condition (PINN): mean of ((u(0) - (v0, w0)) / out_scale)^2,

with du/dt propagated forward through the network alongside the values (exact, and
cheaper than a second autograd pass because t is the only input). Collocation times are
drawn per iteration from one generator shared by all members (uniform in [0, t_end]).

After Adam, :func:`finish_ensemble` finishes every member with full-batch L-BFGS (strong
Wolfe line search) in float64, one member at a time, on the same losses with the PINN's
collocation times fixed (:class:`FinishSpec` states when a member counts as converged).
Members are optimised one at a time, not as one batched problem: a line search on the
summed loss would give all members one step length, and batching does not pay here (a
20-member PINN evaluation costs as much as 20 single ones on one thread: compute-bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fhnpde.models import Kinetics

from .models import Surrogate, kinetics_rhs

ACTIVATIONS = ("tanh",)


class BatchedMLP(nn.Module):
    """E tanh MLPs of one architecture, t -> (v, w), weights stacked on a leading axis."""

    def __init__(self, members: Sequence[Surrogate]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members:
            if m.inputs != ["t"] or m.residual:
                raise ValueError("a BatchedMLP holds trajectory models of the input [t] only")
            if m.widths != first.widths or set(m.activations) - set(ACTIVATIONS):
                raise ValueError(f"all members need the widths {first.widths} and tanh "
                                 "activations")
        self.widths = list(first.widths)
        linears = [[layer for layer in m.net if isinstance(layer, nn.Linear)] for m in members]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([lin[i].weight.detach() for lin in linears]).clone())
             for i in range(len(linears[0]))])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([lin[i].bias.detach() for lin in linears]).clone())
             for i in range(len(linears[0]))])
        for name in ("in_offset", "in_scale", "out_offset", "out_scale"):
            self.register_buffer(name, torch.stack([getattr(m, name).detach() for m in members]))

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    def _inputs(self, t: torch.Tensor) -> torch.Tensor:
        """Times (n,) shared by all members or (E, n) per member -> normalised (E, n, 1)."""
        t = t.reshape(1, -1) if t.dim() == 1 else t
        t = t.expand(self.size, -1).unsqueeze(-1)
        return (t - self.in_offset[:, None, :]) / self.in_scale[:, None, :]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Physical outputs (E, n, 2) at times ``t`` ((n,) or (E, n))."""
        h = self._inputs(t)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.einsum("eni,eoi->eno", h, w) + b[:, None, :]
            if i < last:
                h = torch.tanh(h)
        return h * self.out_scale[:, None, :] + self.out_offset[:, None, :]

    def with_time_derivative(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, du/dt), each (E, n, 2): the tangent carried forward layer by layer."""
        h = self._inputs(t)
        dh = (1.0 / self.in_scale)[:, None, :].expand_as(h)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.einsum("eni,eoi->eno", h, w) + b[:, None, :]
            dh = torch.einsum("eni,eoi->eno", dh, w)
            if i < last:
                h = torch.tanh(h)
                dh = (1.0 - h * h) * dh
        scale = self.out_scale[:, None, :]
        return h * scale + self.out_offset[:, None, :], dh * scale

    def to_surrogates(self, kind: str) -> list[Surrogate]:
        """The members as separate :class:`Surrogate` modules (eval mode)."""
        out = []
        for e in range(self.size):
            m = Surrogate(kind, ["t"], self.widths, ["tanh"])
            linears = [layer for layer in m.net if isinstance(layer, nn.Linear)]
            with torch.no_grad():
                for lin, w, b in zip(linears, self.weights, self.biases, strict=True):
                    lin.weight.copy_(w[e])
                    lin.bias.copy_(b[e])
                m.set_normalisation(*(getattr(self, k)[e].numpy() for k in
                                      ("in_offset", "in_scale", "out_offset", "out_scale")))
            m.eval()
            out.append(m)
        return out


def member(kind: str, widths: list[int], t_end: float, y_train: np.ndarray,
           seed: int) -> Surrogate:
    """The Surrogate a single training of seed ``seed`` starts from (as train.build_surrogate:
    t in [0, t_end] mapped to [-1, 1], outputs by the mean and std of the training targets)."""
    torch.manual_seed(seed)
    model = Surrogate(kind, ["t"], list(widths), ["tanh"])
    y = np.asarray(y_train, float)
    model.set_normalisation([0.5 * t_end], [0.5 * t_end], y.mean(0),
                            np.maximum(y.std(0), 1e-6))
    return model


@dataclass
class Problem:
    """What a PINN of Problem A knows besides its data: kinetics, current, initial state."""

    kinetics: Kinetics
    current: float
    initial: tuple[float, float]
    t_end: float
    collocation: int = 512
    data_weight: float = 1.0
    physics_weight: float = 1.0
    ic_weight: float = 1.0


def field_scale(problem: Problem, y: torch.Tensor) -> torch.Tensor:
    """Typical size of du/dt per member: std of F over its training targets, (E, 2)."""
    fv, fw = kinetics_rhs(problem.kinetics, y[..., 0], y[..., 1], problem.current)
    f = torch.stack([fv, fw], -1)
    s = f.std(1) if f.shape[1] > 1 else f.abs()[:, 0]
    return torch.clamp(s, min=1e-6)


@dataclass
class Losses:
    """Per-member losses, each (E,): the total and its parts (zeros where unused)."""

    total: torch.Tensor
    data: torch.Tensor
    physics: torch.Tensor
    ic: torch.Tensor


def member_losses(model: BatchedMLP, kind: str, x: torch.Tensor, y: torch.Tensor,
                  problem: Problem, collocation: torch.Tensor | None,
                  fscale: torch.Tensor | None = None) -> Losses:
    """The loss of every member: x (E, n) times, y (E, n, 2) targets."""
    scale = model.out_scale[:, None, :]
    data = (((model(x) - y) / scale) ** 2).mean((1, 2))
    zero = torch.zeros_like(data)
    if kind == "ddnn":
        return Losses(data, data, zero, zero)
    if kind != "pinn":
        raise ValueError(f"an ensemble trains ddnn or pinn members, not {kind!r}")
    fscale = field_scale(problem, y) if fscale is None else fscale
    u, du = model.with_time_derivative(collocation)
    fv, fw = kinetics_rhs(problem.kinetics, u[..., 0], u[..., 1], problem.current)
    r = du - torch.stack([fv, fw], -1)
    physics = ((r / fscale[:, None, :]) ** 2).mean((1, 2))
    u0 = model(torch.zeros(1))
    target = torch.tensor(problem.initial, dtype=u0.dtype)
    ic = (((u0 - target) / scale) ** 2).mean((1, 2))
    total = (problem.data_weight * data + problem.physics_weight * physics
             + problem.ic_weight * ic)
    return Losses(total, data, physics, ic)


def collocation_times(gen: torch.Generator, problem: Problem) -> torch.Tensor:
    """This iteration's collocation times (n,), uniform in [0, t_end], one draw for all."""
    return torch.rand(problem.collocation, generator=gen) * problem.t_end


def schedule_factor(iterations: int, warm_fraction: float, final_factor: float
                    ) -> Callable[[int], float]:
    """The fixed learning-rate multiplier: 1 for the first ``warm_fraction`` of the budget,
    then an exponential decay reaching ``final_factor`` at the last iteration."""
    hold = int(round(warm_fraction * iterations))  # as TrainSpec.hold
    span = max(iterations - hold, 1)

    def factor(it: int) -> float:
        if it <= hold:
            return 1.0
        return final_factor ** (min(it - hold, span) / span)

    return factor


@dataclass
class History:
    """Recorded every ``every`` iterations: per-member losses and any monitored metric."""

    iterations: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    total: list[np.ndarray] = field(default_factory=list)
    data: list[np.ndarray] = field(default_factory=list)
    physics: list[np.ndarray] = field(default_factory=list)
    ic: list[np.ndarray] = field(default_factory=list)
    monitor: list[np.ndarray] = field(default_factory=list)

    def array(self, name: str) -> np.ndarray:
        """(records, E) of one recorded quantity."""
        return np.stack(getattr(self, name))


@dataclass
class TrainSpec:
    iterations: int = 20000
    lr: float = 1e-3
    warm_fraction: float = 0.5
    final_factor: float = 1e-2
    record_every: int = 250
    seed: int = 0

    @property
    def hold(self) -> int:
        """The last iteration at the full learning rate."""
        return int(round(self.warm_fraction * self.iterations))


def train_ensemble(model: BatchedMLP, kind: str, x: np.ndarray, y: np.ndarray,
                   problem: Problem, spec: TrainSpec,
                   monitor: Callable[[BatchedMLP], np.ndarray] | None = None) -> History:
    """Full-batch Adam on every member for ``spec.iterations`` under the fixed schedule.

    Nothing but the members' own training points (and, for a PINN, the physics and the
    initial state) enters the updates: no validation set drives the schedule or chooses
    weights; the final weights are the result. ``monitor`` (e.g. the test MAE) is only
    recorded, every ``record_every`` iterations, for the training curves.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
    gen = torch.Generator().manual_seed(spec.seed)
    fscale = field_scale(problem, yt) if kind == "pinn" else None
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, schedule_factor(spec.iterations, spec.warm_fraction, spec.final_factor))
    hist = History()

    def record(it: int, parts: Losses) -> None:
        hist.iterations.append(it)
        hist.lr.append(opt.param_groups[0]["lr"])
        for name in ("total", "data", "physics", "ic"):
            getattr(hist, name).append(getattr(parts, name).detach().numpy().astype(float))
        if monitor is not None:
            with torch.no_grad():
                hist.monitor.append(np.asarray(monitor(model), float))

    for it in range(spec.iterations):
        colloc = collocation_times(gen, problem) if kind == "pinn" else None
        parts = member_losses(model, kind, xt, yt, problem, colloc, fscale)
        if it % spec.record_every == 0:
            record(it, parts)
        opt.zero_grad(set_to_none=True)
        parts.total.sum().backward()
        opt.step()
        sched.step()
        if not math.isfinite(float(parts.total.detach().sum())):
            raise RuntimeError(f"an ensemble member's loss is not finite at iteration {it}")
    colloc = collocation_times(gen, problem) if kind == "pinn" else None
    record(spec.iterations, member_losses(model, kind, xt, yt, problem, colloc, fscale))
    return hist


def plateau_change(history: History, fraction: float = 0.2, name: str = "total",
                   until: int | None = None) -> np.ndarray:
    """Per member: relative decrease of the training loss over the last ``fraction`` of
    the records (those at iterations <= ``until``, if given), 1 - min(last part) /
    min(before it); near 0 once the loss has stopped falling."""
    values = history.array(name)
    if until is not None:
        values = values[: int(np.sum(np.asarray(history.iterations) <= until))]
    k = max(1, int(round(fraction * (len(values) - 1))))
    before = values[:-k].min(0)
    late = values[-k:].min(0)
    return 1.0 - np.minimum(late, before) / np.maximum(before, 1e-30)


# -- the finishing phase: full-batch L-BFGS, one member at a time ----------------------------


@dataclass
class FinishSpec:
    """L-BFGS after Adam, per member, in ``dtype``, on a fixed loss.

    The loss of a PINN member is the Adam phase's with the collocation times fixed:
    ``collocation`` stratified times in [0, t_end] (one uniform draw per stratum, from
    ``seed``), the same for every member, so the objective is deterministic (L-BFGS's line
    search needs that). A member is *converged* when L-BFGS stops by its own tests (largest
    gradient component <= ``grad_tol``, or no change in the loss or the weights), or when its
    loss fell by less than ``tol`` (relative) over the last ``window`` iterations; it stops
    there. ``max_iterations`` bounds every member's L-BFGS (then it is not converged).
    """

    max_iterations: int = 4000
    window: int = 500
    tol: float = 1e-2
    chunk: int = 50
    history: int = 50
    collocation: int = 2048
    grad_tol: float = 1e-9
    seed: int = 54321
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if min(self.window, self.max_iterations, self.chunk) < 1:
            raise ValueError("window, max_iterations and chunk must be positive")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"FinishSpec.dtype is float32 or float64, not {self.dtype!r}")


@dataclass
class MemberFinish:
    """One member's L-BFGS: records every ``chunk`` iterations, and how it ended."""

    iterations: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    data: list[float] = field(default_factory=list)
    physics: list[float] = field(default_factory=list)
    ic: list[float] = field(default_factory=list)
    grad: list[float] = field(default_factory=list)
    monitor: list[float] = field(default_factory=list)
    evaluations: int = 0
    reason: str = "budget"

    @property
    def converged(self) -> bool:
        return self.reason != "budget"


def fixed_collocation(spec: FinishSpec, t_end: float) -> torch.Tensor:
    """The finishing phase's collocation times: one uniform draw in each of ``collocation``
    equal strata of [0, t_end] (float64)."""
    gen = torch.Generator().manual_seed(spec.seed)
    n = spec.collocation
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return (torch.arange(n, dtype=torch.float64) + u) * (t_end / n)


def select(model: BatchedMLP, e: int) -> BatchedMLP:
    """Member ``e`` alone, as a one-member BatchedMLP holding copies of its tensors."""
    sub = BatchedMLP.__new__(BatchedMLP)
    nn.Module.__init__(sub)
    sub.widths = list(model.widths)
    sub.weights = nn.ParameterList([nn.Parameter(w[e:e + 1].detach().clone())
                                    for w in model.weights])
    sub.biases = nn.ParameterList([nn.Parameter(b[e:e + 1].detach().clone())
                                   for b in model.biases])
    for name in ("in_offset", "in_scale", "out_offset", "out_scale"):
        sub.register_buffer(name, getattr(model, name)[e:e + 1].clone())
    return sub


def relative_drop(iterations: Sequence[int], values: Sequence[float], window: int) -> float:
    """1 - values[-1] / (the value at the last record at least ``window`` iterations before):
    how much the last ``window`` iterations lowered the loss (inf until there is such a
    record; 0 for a zero loss)."""
    back = [i for i, it in enumerate(iterations) if it <= iterations[-1] - window]
    if not back:
        return math.inf
    before = values[back[-1]]
    return 1.0 - min(values[-1], before) / before if before > 0 else 0.0


def finish_member(sub: BatchedMLP, kind: str, x: torch.Tensor, y: torch.Tensor,
                  problem: Problem, spec: FinishSpec, collocation: torch.Tensor | None,
                  monitor: Callable[[BatchedMLP], np.ndarray] | None = None) -> MemberFinish:
    """L-BFGS (strong-Wolfe line search) on one member, in place."""
    fscale = field_scale(problem, y) if kind == "pinn" else None
    opt = torch.optim.LBFGS(sub.parameters(), lr=1.0, max_iter=spec.chunk,
                            max_eval=4 * spec.chunk, tolerance_grad=spec.grad_tol,
                            tolerance_change=1e-300, history_size=spec.history,
                            line_search_fn="strong_wolfe")
    rec = MemberFinish()
    evals = [0]

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = member_losses(sub, kind, x, y, problem, collocation, fscale).total.sum()
        loss.backward()
        evals[0] += 1
        return loss

    def record(it: int) -> None:
        parts = member_losses(sub, kind, x, y, problem, collocation, fscale)
        opt.zero_grad(set_to_none=True)
        parts.total.sum().backward()
        grad = max(float(p.grad.abs().max()) for p in sub.parameters())
        opt.zero_grad(set_to_none=True)
        rec.iterations.append(it)
        for name in ("total", "data", "physics", "ic"):
            getattr(rec, name).append(float(getattr(parts, name).detach()[0]))
        rec.grad.append(grad)
        if monitor is not None:
            with torch.no_grad():
                rec.monitor.append(float(np.asarray(monitor(sub))[0]))

    done = 0
    record(0)
    while done < spec.max_iterations:
        before_iter, before_evals = opt.state[opt._params[0]].get("n_iter", 0), evals[0]
        opt.param_groups[0]["max_iter"] = min(spec.chunk, spec.max_iterations - done)
        opt.step(closure)
        state = opt.state[opt._params[0]]
        ran = state.get("n_iter", 0) - before_iter
        done = state.get("n_iter", 0)
        record(done)
        if not math.isfinite(rec.total[-1]):
            raise RuntimeError(f"a member's loss is not finite after {done} L-BFGS iterations")
        if (ran < opt.param_groups[0]["max_iter"]
                and evals[0] - before_evals < 4 * spec.chunk):
            rec.reason = "lbfgs"  # stopped by its own tests: gradient or no progress
            break
        if relative_drop(rec.iterations, rec.total, spec.window) < spec.tol:
            rec.reason = "plateau"
            break
    rec.evaluations = evals[0]
    return rec


def finish_ensemble(model: BatchedMLP, kind: str, x: np.ndarray, y: np.ndarray,
                    problem: Problem, spec: FinishSpec,
                    monitor: Callable[[BatchedMLP], np.ndarray] | None = None
                    ) -> list[MemberFinish]:
    """L-BFGS on every member in turn, in ``spec.dtype``; ``model`` is converted to it and
    receives the finished weights. Members are optimised one at a time so that each line
    search sees that member's loss alone (a line search on the summed loss would move
    every member by one shared step length)."""
    dtype = getattr(torch, spec.dtype)
    model.to(dtype)
    xt = torch.as_tensor(np.asarray(x), dtype=dtype)
    yt = torch.as_tensor(np.asarray(y), dtype=dtype)
    colloc = fixed_collocation(spec, problem.t_end).to(dtype) if kind == "pinn" else None
    out = []
    for e in range(model.size):
        sub = select(model, e)
        out.append(finish_member(sub, kind, xt[e:e + 1], yt[e:e + 1], problem, spec, colloc,
                                 monitor))
        with torch.no_grad():
            for big, small in zip(list(model.weights) + list(model.biases),
                                  list(sub.weights) + list(sub.biases), strict=True):
                big[e] = small[0]
    return out
