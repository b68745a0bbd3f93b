"""Hostile input: every YAML a user (or anyone) can hand the loaders ends as a valid object or
one line of error (exit status 2), never a traceback or a hang.

Each test reproduces one report of the trust issue: YAML bombs (alias expansion, nesting,
duplicate keys, huge integers), files that are not files (FIFO, device, directory, huge,
not UTF-8), error messages that quote a huge value, and case values whose derived numbers
(steps, node spacing, D / dx^2, summed currents) are not finite or not representable.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fhnpde import yamlio
from fhnpde.case import CaseError, load_case, parse_case, quote, yaml_load
from fhnpde.cli import main
from fhnpde.grid import UniformGrid
from fhnpde.problem import build_problem

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"
DIVERGENT = CASES / "divergent.yaml"
ENSEMBLE = CASES / "cell_ensemble.yaml"
CONFIGS = ROOT / "surrogates" / "configs"


def divergent_text(description: str) -> str:
    """The divergent case with its description replaced by ``description`` (YAML text)."""
    lines = DIVERGENT.read_text().splitlines()
    return "\n".join(f"description: {description}" if ln.startswith("description:") else ln
                     for ln in lines) + "\n"


def laughs(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs value: level k is a list of ``width`` aliases of level k - 1."""
    items = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    items += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]"
              for k in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


def write(tmp_path: Path, text: str | bytes, name: str = "case.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def load_error(path, overrides=None) -> str:
    """The one-line message load_case raises for ``path`` (fails if it loads)."""
    with pytest.raises(CaseError) as info:
        load_case(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    assert len(message) <= 1000, message
    return message


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhnpde", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fhnpde: error: ")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


# --- YAML attacks --------------------------------------------------------------------------


def test_billion_laughs_is_refused_at_once(tmp_path):
    text = divergent_text(laughs())
    assert len(laughs()) < 700  # the whole bomb: 10^9 strings once expanded
    p = write(tmp_path, text)
    start = time.perf_counter()
    message = load_error(p)
    assert time.perf_counter() - start < 5.0
    assert "expands to more than 100,000 values" in message
    assert "line 2" in message


def test_nested_brackets_are_refused_before_the_recursion_limit(tmp_path):
    p = write(tmp_path, divergent_text("[" * 900 + "]" * 900))  # 1.8 kB
    message = load_error(p)
    assert "nest deeper than 50 levels" in message
    assert "line 2" in message


def test_nesting_within_the_limit_is_read():
    value = yaml_load("[" * 40 + "]" * 40)
    for _ in range(39):
        (value,) = value
    assert value == []


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    text = DIVERGENT.read_text().replace("output:", "name: other\noutput:")
    p = write(tmp_path, text)
    message = load_error(p)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln == "name: other")
    assert f"line {line}, column 1: duplicate key 'name' (first given at line 1)" in message


def test_nested_duplicate_keys_are_refused(tmp_path):
    p = write(tmp_path, DIVERGENT.read_text().replace("t_end: 300.0,", "t_end: 300.0, dt: 1.0,"))
    assert "duplicate key 'dt'" in load_error(p)


def test_merge_keys_may_override_without_being_duplicates():
    data = yaml_load("base: &b {t_end: 1.0, dt: 0.1}\ntime: {<<: *b, dt: 0.01}\n")
    assert data["time"] == {"t_end": 1.0, "dt": 0.01}


def test_a_recursive_alias_is_refused():
    with pytest.raises(yamlio.YAMLLimitError, match="lies inside the node it names"):
        yaml_load("a: &x [1, *x]\n")


def test_aliases_within_the_budget_are_read():
    text = "a: &p [0.0, 2.0]\nb: *p\nc: [*p, *p]\n"
    assert yaml_load(text) == {"a": [0.0, 2.0], "b": [0.0, 2.0], "c": [[0.0, 2.0]] * 2}


def test_a_huge_integer_is_refused_not_a_traceback(tmp_path):
    p = write(tmp_path, DIVERGENT.read_text().replace("nx: 801", "nx: " + "9" * 5000))
    message = load_error(p)
    assert "an integer of 5,000 characters" in message


def test_a_file_over_one_mebibyte_is_refused(tmp_path):
    p = write(tmp_path, DIVERGENT.read_text() + "#" * (1 << 20) + "\n")
    assert "is larger than 1 MiB" in load_error(p)


def test_a_character_yaml_forbids_is_one_line(tmp_path):
    p = write(tmp_path, DIVERGENT.read_text().replace("Gaussian", "Gauss\x00ian"))
    assert "character '\\x00' at position" in load_error(p)


def test_syntax_errors_quote_at_most_a_few_words(tmp_path):
    p = write(tmp_path, "name: x\nrefs: *" + "z" * 5000 + "\n")
    message = load_error(p)
    assert "not valid YAML at line 2" in message
    assert "undefined alias" in message
    assert len(message) < len(str(p)) + 250


@pytest.mark.parametrize(("value", "fragment"), [
    (laughs(), "expands to more than"),
    ("[" * 200 + "]" * 200, "nest deeper than"),
    ("{a: 1, a: 2}", "duplicate key 'a'"),
])
def test_set_values_go_through_the_same_reader(value, fragment):
    message = load_error(DIVERGENT, [f"description={value}"])
    assert "--set" in message
    assert fragment in message


def test_a_set_key_path_deeper_than_any_case_key_is_refused():
    assert "deeper than any case key" in load_error(DIVERGENT, ["a" + ".a" * 500 + "=1"])


def test_invalid_yaml_in_set_stays_a_string():
    case = load_case(DIVERGENT, ["description=a: b: c"])
    assert case.description == "a: b: c"


# --- what the case file is -------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "case.yaml"
    os.mkfifo(fifo)
    assert "is not a regular file" in load_error(fifo)
    proc = run_cli(["run", str(fifo), "--quiet"], tmp_path, timeout=60)
    assert_one_line_exit_2(proc, "is not a regular file", "give the path of a YAML case file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_refused_also_through_a_symlink(tmp_path):
    assert "is not a regular file" in load_error("/dev/zero")
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    proc = run_cli(["run", str(link), "--quiet"], tmp_path, timeout=60)
    assert_one_line_exit_2(proc, "zero.yaml: is not a regular file")


def test_directory_missing_file_and_non_utf8_are_one_line(tmp_path):
    assert load_error(tmp_path).endswith("is a directory, not a case file")
    assert load_error(tmp_path / "nope.yaml").endswith("no such case file; check the path")
    p = write(tmp_path, b"name: caf\xe9\n")
    assert "is not UTF-8 text (byte 0xe9 at offset 9)" in load_error(p)
    assert "cannot open the file" in load_error(str(tmp_path / "a\x00b.yaml"))


# --- error messages quote bounded values -----------------------------------------------------


def test_quote_is_bounded_and_cheap():
    bomb = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # 9^10 strings when walked
    start = time.perf_counter()
    shown = quote(bomb)
    assert time.perf_counter() - start < 0.1
    assert len(shown) <= 60
    assert shown.endswith("…")
    assert quote("x" * 10_000) == "'" + "x" * 58 + "…"
    assert quote(10**5000) == "<an integer of about 5001 digits>"
    assert quote("a\nb") == "'a\\nb'"
    assert quote(0.1) == "0.1"


def test_case_error_is_one_line_whatever_its_parts_hold():
    exc = CaseError("bad\nvalue" + "x" * 5000, source="dir\nname.yaml", key="a\rb")
    text = str(exc)
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) < 1000
    assert exc.detail.startswith("bad\nvalue")
    assert exc.key == "a\rb"
    assert str(exc.with_source("s.yaml")).startswith("s.yaml: a\\rb: bad\\nvalue")


@pytest.mark.parametrize(("override", "fragments"), [
    ("time.dt=" + "x" * 5000, ["time.dt", "must be a number", "'xxxxx", "…"]),
    ("model.kinetics=" + "k" * 5000, ["model.kinetics", "unknown kinetics", "…"]),
    ("solver.method=" + "m" * 5000, ["solver.method", "unknown solver", "…"]),
    ("initial.v.kind=" + "g" * 5000, ["initial.v", "kind must be one of 'gaussian', 'box'"]),
    ("model.params." + "p" * 5000 + "=1", ["model.params", "unknown parameter", "…"]),
    ("time.dtt" + "t" * 5000 + "=1", ["time.dttt", "unknown key"]),
    ("name=" + laughs(3, 10), ["name", "must be a string", "…"]),  # 10^4 strings
])
def test_error_messages_cap_quoted_values(override, fragments):
    message = load_error(DIVERGENT, [override])
    assert len(message) < 400, message
    for frag in fragments:
        assert frag in message, (frag, message)


def test_an_api_value_too_large_to_print_is_still_reported():
    data = yaml.safe_load(DIVERGENT.read_text())
    data["time"]["dt"] = 10**5000  # repr() of it raises ValueError
    with pytest.raises(CaseError, match=r"time\.dt: must be a number, got <an integer of"):
        parse_case(data, "api")


# --- derived numbers ---------------------------------------------------------------------------

NUMERIC = [
    # (case, overrides, key of the error, fragment of the message)
    (DIVERGENT, ["time.dt=1e-310"], "time.dt", "below the smallest normal float"),
    (DIVERGENT, ["time.t_end=1e308"], "time.t_end", "= inf steps, more than the 2**53"),
    (DIVERGENT, ["time.t_end=1e20"], "time.t_end", "more than the 2**53"),
    (DIVERGENT, ["time.save_every=1e308"], "time.save_every", "more than the 2**53"),
    (DIVERGENT, ["domain.length=1e-300"], "domain.length", "dx = length / (nx - 1) = 1.25e-303"),
    (DIVERGENT, ["domain.length=1e308"], "domain.length", "dx between 1.49e-154 and 6.7e+153"),
    (DIVERGENT, ["domain.nx=100000000000000000000"], "domain.nx", "must be <= 9.0072e+15"),
    (DIVERGENT, ["domain.boundary=periodic", "domain.length=1e-300"], "domain.length",
     "dx = length / nx"),
    (DIVERGENT, ["model.diffusion=1e-320"], "model.diffusion", "use 0 for no diffusion"),
    (DIVERGENT, ["model.diffusion=1e300", "domain.length=1e-100"], "model.diffusion",
     "D / dx^2 = inf"),
    (DIVERGENT, ["solver.method=split", "model.diffusion=1e18"], "time.dt",
     "diffusion number D dt / dx^2 = 3.2e+17"),
    (DIVERGENT, ["solver.method=crank-nicolson", "model.diffusion=1e300"], "time.dt",
     "diffusion number"),
    (DIVERGENT, ["solver.method=adaptive", "solver.adaptive.coarse_dx=1e308"],
     "solver.adaptive.coarse_dx", "more than the 2**52 the solver counts"),
    (DIVERGENT, ["solver.method=adaptive", "solver.adaptive.front_radius=1e300"],
     "solver.adaptive.front_radius", "acts as domain.length"),
    (DIVERGENT, ["solver.method=split", "time.dt=1e-300", "time.t_end=1e-300",
                 "time.save_every=null", "reaction.substeps=10000000000"],
     "reaction.substeps", "use fewer substeps"),
    (DIVERGENT, ["solver.newton.max_iter=100000000000000000000"], "solver.newton.max_iter",
     "must be <= 9.0072e+15"),
    (DIVERGENT, ["initial.v.amplitude=1e308", "initial.v.base=1e308"], "initial.v.amplitude",
     "base + amplitude = 1e+308 + 1e+308 overflows"),
    (DIVERGENT, ["initial.w={kind: box, x: [0, 1], amplitude: -1e308, base: -1e308}"],
     "initial.w.amplitude", "overflows"),
    (DIVERGENT, ["stimuli=[{x: [0, 1], amplitude: 1e308}, {x: [0, 1], amplitude: 1e308}]"],
     "stimuli", "add up to more than a float holds"),
    (DIVERGENT, ["output.chunk_mb=1e300"], "output.chunk_mb", "must be <= 2048"),
    (ENSEMBLE, ["time.dt=1e-310"], "time.dt", "below the smallest normal float"),
    (ENSEMBLE, ["time.t_end=1e308"], "time.t_end", "more than the 2**53"),
    (ENSEMBLE, ["ensemble.vary.I=[-1e308, 1e308]"], "ensemble.vary.I",
     "wider than a float holds"),
    (ENSEMBLE, ["ensemble.vary.I={values: [1e308]}", "stimuli=[{amplitude: 1e308}]"],
     "stimuli", "add up to more than a float holds"),
    (ENSEMBLE, ["ensemble.size=100000000000000000000"], "ensemble.size", "must be <="),
    (ENSEMBLE, ["ensemble.sample=grid", "ensemble.size=null", "ensemble.points=1000000000"],
     "ensemble.points", "the grid has 1e+27 members"),
]


@pytest.mark.parametrize(("case", "overrides", "key", "fragment"), NUMERIC,
                         ids=[" ".join(n[1])[:60] for n in NUMERIC])
def test_unrepresentable_derived_numbers_are_refused(tmp_path, capsys, case, overrides, key,
                                                     fragment):
    sets = [arg for o in overrides for arg in ("--set", o)]
    out = tmp_path / "out.zarr"
    assert main(["run", str(case), "--quiet", "--out", str(out), *sets]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fhnpde: error: {case}: {key}: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize(("case", "overrides"), [
    (DIVERGENT, ["time.dt=1e-310"]),
    (DIVERGENT, ["time.t_end=1e308"]),
    (DIVERGENT, ["domain.length=1e-300"]),
    (DIVERGENT, ["domain.length=1e308"]),
    (DIVERGENT, ["solver.method=split", "model.diffusion=1e18"]),
    (DIVERGENT, ["solver.method=adaptive", "solver.adaptive.coarse_dx=1e308"]),
    (ENSEMBLE, ["time.dt=1e-310"]),
    (ENSEMBLE, ["time.save_every=1e308"]),
])
def test_the_command_line_reports_them_in_one_line(tmp_path, case, overrides):
    """Each of these was a traceback (OverflowError, ZeroDivisionError, PivotError)."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    proc = run_cli(["run", str(case), "--quiet", "--out", str(tmp_path / "o.zarr"), *sets],
                   tmp_path)
    assert_one_line_exit_2(proc, str(case))


def test_the_limits_leave_ordinary_extremes_alone():
    case = load_case(DIVERGENT, ["time.t_end=1e10", "time.dt=0.02", "time.save_every=null",
                                 "domain.length=1e-150", "domain.nx=3", "model.diffusion=1e-300"])
    assert case.time.n_steps == 500_000_000_000
    assert case.domain.dx == 5e-151
    ring = load_case(DIVERGENT, ["domain.boundary=periodic", "domain.length=1e150",
                                 "domain.nx=3", "model.diffusion=1e10"])
    assert ring.domain.dx == pytest.approx(1e150 / 3)


def test_a_pulse_narrower_than_any_float_spacing_is_evaluated_without_overflow():
    # the conftest fixture makes numpy raise on overflow: the profile must not overflow
    for width, center in ((1e-300, 100.0), (5.0, 1e308), (5.0, -1.7e308), (1e308, 100.0)):
        case = load_case(DIVERGENT, [f"initial.v.width={width}", f"initial.v.center={center}"])
        v0 = build_problem(case).v0
        assert np.all(np.isfinite(v0))
        peak = 1.0 if center == 100.0 else 0.0
        assert v0.max() == pytest.approx(peak)
    # unchanged where nothing overflows: amplitude * exp(-((x - c) / w)^2)
    case = load_case(DIVERGENT)
    x = build_problem(case).grid.x
    np.testing.assert_allclose(build_problem(case).v0, np.exp(-(((x - 100.0) / 5.0) ** 2)),
                               rtol=1e-15, atol=0)


def test_grid_refuses_a_spacing_whose_square_is_not_a_normal_float():
    assert UniformGrid(200.0, 801).dx == 0.25
    for length in (1e-300, 1e308, math.inf):
        with pytest.raises(ValueError, match="normal floats"):
            UniformGrid(length, 801)


# --- sweep files and surrogate configs --------------------------------------------------------


def sweep_text(**changes: str) -> str:
    text = (CASES / "sweep_threshold.yaml").read_text()
    for old, new in changes.items():
        assert old in text or old.replace("_", ".") in text
        text = text.replace(old, new)
    return text


def load_sweep_error(path) -> str:
    from fhnpde.sweep import load_sweep

    with pytest.raises(CaseError) as info:
        load_sweep(path)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) <= 1000
    return message


def test_sweep_files_go_through_the_bounded_reader(tmp_path):
    (tmp_path / "divergent.yaml").write_text(DIVERGENT.read_text())
    p = write(tmp_path, sweep_text() + "keep: fields\n", "sweep.yaml")
    assert "duplicate key 'keep'" in load_sweep_error(p)
    p = write(tmp_path, sweep_text().replace("description: >-", f"description: {laughs()}\n"
                                             "notes: >-"), "sweep.yaml")
    assert "expands to more than" in load_sweep_error(p)
    assert "is not a regular file" in load_sweep_error("/dev/zero")


def test_a_sweep_base_that_is_a_device_is_refused(tmp_path):
    p = write(tmp_path, sweep_text().replace("base: divergent.yaml", "base: /dev/zero"),
              "sweep.yaml")
    message = load_sweep_error(p)
    assert "base: /dev/zero: is not a regular file" in message


def test_a_sweep_range_wider_than_a_float_is_refused(tmp_path):
    (tmp_path / "divergent.yaml").write_text(DIVERGENT.read_text())
    p = write(tmp_path, sweep_text().replace("[0.02, 0.14]", "[-1e308, 1e308]"), "sweep.yaml")
    assert "vary.model.params.a: the range [-1e+308, 1e+308] is wider" in load_sweep_error(p)


def test_a_sweep_of_too_many_members_is_refused_before_building_them(tmp_path):
    (tmp_path / "divergent.yaml").write_text(DIVERGENT.read_text())
    p = write(tmp_path, sweep_text().replace("points: 13", "points: 10000"), "sweep.yaml")
    start = time.perf_counter()
    message = load_sweep_error(p)
    assert time.perf_counter() - start < 5.0
    assert "points: the sweep would have 110,000 members, more than the 100,000" in message


def test_sweep_command_reports_a_bad_sweep_in_one_line(tmp_path):
    (tmp_path / "divergent.yaml").write_text(DIVERGENT.read_text())
    p = write(tmp_path, sweep_text().replace("points: 13", "points: 13\npoints: 5"),
              "sweep.yaml")
    proc = run_cli(["sweep", str(p), "--quiet"], tmp_path)
    assert_one_line_exit_2(proc, "duplicate key 'points'")


def load_config_error(path, overrides=None) -> str:
    from surrogates.config import load_config

    with pytest.raises(CaseError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) <= 1000
    return message


@pytest.mark.parametrize(("config", "override", "fragment"), [
    ("problem_a.yaml", "data.solver.dt=1e-310", "data.solver.dt: 1e-310 is below"),
    ("problem_a.yaml", "data.t_end=1e308", "data.t_end: makes a run of 1e+308 / dt"),
    ("neural_ode.yaml", "data.steps=9007199254740992", "data.steps: makes a run"),
    ("itnn.yaml", "data.dt_r=1e300", "data.dt_r: makes a run"),
    ("itnn.yaml", "data.box.v=[-1e308, 1e308]", "data.box.v: the range [-1e+308, 1e+308]"),
    ("itnn.yaml", "diagnostics.grid_v=[-1e308, 1e308]", "diagnostics.grid.v: the range"),
    ("itnn.yaml", "model.activations=[" + "s" * 5000 + "]", "unknown activation 'sss"),
    ("itnn.yaml", "kinetics.name=" + "n" * 5000, "kinetics.name: unknown kinetics 'nnn"),
    ("itnn.yaml", "training.iterations=100000000000000000000", "must be <= 9.0072e+15"),
    ("itnn.yaml", "model.pinn.physics_weight=.inf", "must be a finite number"),
    ("itnn.yaml", "description=" + laughs(), "expands to more than"),
])
def test_surrogate_configs_are_bounded_too(config, override, fragment):
    message = load_config_error(CONFIGS / config, [override])
    assert fragment in message, message
    assert len(message) < 500


def test_a_config_with_duplicate_keys_is_refused(tmp_path):
    text = (CONFIGS / "problem_a.yaml").read_text()
    p = write(tmp_path, text + "name: again\n", "config.yaml")
    assert "duplicate key 'name' (first given at line 1)" in load_config_error(p)


# --- runs of steps between outputs --------------------------------------------------------------


class _Box:
    """The fields of a stimulus that AppliedCurrent reads, for a point model."""

    def __init__(self, t0, t1):
        self.t, self.amplitude, self.x = [t0, t1], 1.0, None


def _segments_stepwise(current, t, dt, nsteps):
    """The runs of an unchanging current, found by evaluating every step time (the former
    implementation, O(nsteps) memory)."""
    from fhnpde.stimulus import box_active

    if current.t0.size == 0 or nsteps <= 1:
        return [(0, nsteps)]
    on = box_active((t + np.arange(nsteps) * dt)[:, None], current.t0, current.t1)
    change = np.flatnonzero(np.any(on[1:] != on[:-1], axis=1)) + 1
    bounds = [0, *change.tolist(), nsteps]
    return [(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_current_segments_equal_the_stepwise_ones():
    from fhnpde.stimulus import AppliedCurrent

    rng = np.random.default_rng(7)
    for _ in range(2000):
        dt = float(rng.choice([0.1, 0.05, 0.02, 1 / 3, 0.3, 1e-3, 2.0]))
        t = float(rng.choice([0.0, 0.1, 0.3, 7.7, -1.0]))
        n = int(rng.choice([1, 2, 3, 10, 30, 1000]))

        def switch(t=t, dt=dt, n=n):  # on a step time (as the loop computes it) or between
            if rng.random() < 0.6:
                return t + int(rng.integers(-3, n + 3)) * dt
            return float(rng.uniform(t - 1, t + n * dt + 1))

        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            t0 = switch()
            boxes.append(_Box(t0, [None, switch(), t0][int(rng.integers(3))]))
        current = AppliedCurrent(boxes, None, 0.0, 1)
        assert current.segments(t, dt, n) == _segments_stepwise(current, t, dt, n)


def test_current_segments_of_billions_of_steps_cost_nothing():
    """One output of a long run used to allocate every step time (37 GiB for 5e9 steps)."""
    from fhnpde.stimulus import AppliedCurrent

    current = AppliedCurrent([_Box(0.0, 1.0), _Box(5.0, None)], None, 0.0, 1)
    start = time.perf_counter()
    segments = current.segments(0.0, 0.02, 5_000_000_000)
    assert time.perf_counter() - start < 0.1
    assert segments == [(0, 50), (50, 200), (250, 5_000_000_000 - 250)]
