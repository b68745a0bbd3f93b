"""Resource estimates (fhnpde.resources): against the stores and memory peaks of real runs,
and the refusals, notes and ``--force`` of ``run`` and ``sweep``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fhnpde import resources
from fhnpde.case import CaseError, load_case
from fhnpde.driver import build_solver, output_times, run_case, store_writer
from tests.helpers import CELL, SMALL_CABLE, make_case

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"
GiB = 2**30


def _disk_usage(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks)."""
    return sum(os.stat(p).st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _store_arrays(path: Path):
    import zarr

    return dict(zarr.open_group(str(path), mode="r").arrays())


def _full_chunks(arrays) -> int:
    """Uncompressed bytes of every chunk of every array, edge chunks whole."""
    return sum(a.nchunks * int(np.prod(a.chunks)) * a.dtype.itemsize for a in arrays.values())


# --- counting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_steps", "per", "dt"), [
    (0, 1, 1.0), (15000, 50, 0.02), (15001, 50, 0.02), (7, 7, 0.3), (7, 3, 0.1),
    (1, 5, 1e-3), (10**6, 3, 0.0015625),
])
def test_output_times_equal_the_list_formula_and_n_outputs_counts_them(n_steps, per, dt):
    old = np.asarray(list(range(0, n_steps, per)) + [n_steps], dtype=float) * dt
    new = output_times(n_steps, per, dt)
    assert new.dtype == old.dtype
    assert np.array_equal(new, old)

    class Time:  # n_outputs reads only these two properties
        n_steps = 0
        steps_per_output = 1

    t = Time()
    t.n_steps, t.steps_per_output = n_steps, per
    assert resources.n_outputs(t) == old.size


@pytest.mark.parametrize("sets", [
    ("domain.nx=81", "time.save_every=0.05"),          # many outputs per chunk
    ("domain.nx=300001", "time.save_every=0.05", "solver.method=crank-nicolson"),  # 1 per chunk
    ("output.chunk_mb=0.01", "time.save_every=0.05"),
])
def test_the_store_chunk_rule_is_the_writers(sets, tmp_path):
    case = make_case(SMALL_CABLE, *sets)
    problem, solver = build_solver(case)
    writer = store_writer(case, problem, solver, tmp_path / "s.zarr")
    size, outputs = case.domain.nx, resources.n_outputs(case.time)
    assert resources._store_chunk(size, outputs, case.output.chunk_mb) == writer.chunk


def test_the_extras_table_names_the_adaptive_solvers_stored_variables():
    case = make_case(SMALL_CABLE, "solver.method=adaptive")
    _, solver = build_solver(case)
    declared = solver.output_variables()
    assert set(declared) == set(resources.EXTRAS["adaptive"])
    for name, (per_node, per_output) in resources.EXTRAS["adaptive"].items():
        dims, attrs = declared[name]
        itemsize = np.dtype(attrs.get("dtype", "f8")).itemsize
        assert (per_node, per_output) == ((itemsize, 0) if dims else (0, itemsize))


def test_every_registered_solver_has_measured_work_factors():
    from fhnpde.solvers import load_all
    from fhnpde.solvers.base import REGISTRY

    load_all()  # every solver module, so all are registered
    for geometry, name in REGISTRY:
        table = {"cable": resources.CABLE_WORK, "sheet": resources.SHEET_WORK,
                 "point": resources.POINT_WORK}[geometry]
        assert set(table.get(name, {})) == {"numba", "array"}, (geometry, name)


def test_ensemble_members_are_counted_without_sampling():
    grid = make_case(CELL, "ensemble={sample: grid, points: 7, vary: {I: [0.0, 0.1], "
                           "v0: {values: [0.1, 0.2, 0.3]}, w0: [0.0, 0.0]}}")
    assert resources.ensemble_members(grid) == 7 * 3 * 1
    lhs = make_case(CELL, "ensemble={size: 10000000000, vary: {I: [0.0, 0.1]}}")
    assert resources.ensemble_members(lhs) == 10**10
    assert resources.ensemble_members(make_case(CELL)) == 1


def test_human_bytes():
    assert resources.human_bytes(512) == "512 B"
    assert resources.human_bytes(1536) == "1.5 KiB"
    assert resources.human_bytes(167 * 2**40) == "167 TiB"
    assert resources.human_bytes(3 * 2**80 * 10**6).endswith("YiB")


# --- disk: against the stores written ------------------------------------------------------


@pytest.mark.parametrize("sets", [
    ("domain.nx=401", "time.dt=0.005", "time.save_every=0.05", "output.chunk_mb=0.05"),
    ("solver.method=adaptive", "solver.backend=numba", "time.save_every=0.5"),
    ("domain.nx=5", "time.save_every=0.05"),                             # tiny: blocks dominate
])
def test_disk_estimate_of_a_cable_store(sets, tmp_path):
    case = make_case(SMALL_CABLE, *sets)
    if case.solver.method == "adaptive":
        pytest.importorskip("numba")
    path = tmp_path / "c.zarr"
    result = run_case(case, out=path)
    assert result.status == "complete"
    estimate = resources.estimate_run(case, block=os.statvfs(tmp_path).f_bsize)
    arrays = _store_arrays(path)
    # every stored byte counted exactly (xarray's Dataset.nbytes of the store)
    assert estimate.data_bytes == sum(a.nbytes for a in arrays.values())
    # an upper bound of the store uncompressed (whole chunks) and of what it takes on disk,
    # and not a loose one: within 2x of the whole chunks plus one block per file
    full = _full_chunks(arrays)
    on_disk = _disk_usage(path)
    assert estimate.disk >= full
    assert estimate.disk >= on_disk
    files = sum(1 for p in path.rglob("*") if p.is_file())
    assert estimate.disk <= 2 * full + files * 4096 + resources.METADATA


def test_disk_estimate_of_a_point_ensemble_store(tmp_path):
    case = make_case(CELL, "ensemble={size: 3000, vary: {I: [0.08, 0.12], v0: [0.0, 0.8]}}",
                     "time.save_every=0.05", "output.chunk_mb=0.5")
    path = tmp_path / "p.zarr"
    assert run_case(case, out=path).status == "complete"
    estimate = resources.estimate_run(case, block=os.statvfs(tmp_path).f_bsize)
    arrays = _store_arrays(path)
    assert estimate.data_bytes == sum(a.nbytes for a in arrays.values())
    assert estimate.disk >= _full_chunks(arrays)
    assert estimate.disk >= _disk_usage(path)
    assert estimate.disk <= 1.3 * _full_chunks(arrays) + resources.METADATA + 20 * 4096


SWEEP = """\
name: tiny
base:
  name: tiny
  model: {{kinetics: nagumo, params: {{k: 1.0, a: 0.1, eps: 0.01, gamma: 0.5}}}}
  domain: {{length: 40.0, nx: 81}}
  initial: {{v: {{kind: gaussian, center: 20.0, width: 3.0, amplitude: 1.0}}, w: 0.0}}
  time: {{t_end: 2.0, dt: 0.05, save_every: 0.5}}
  solver: {{method: explicit, backend: numpy}}
sample: grid
vary:
  model.params.a: [0.05, 0.15]
  initial.v.amplitude: {{values: [0.2, 0.6]}}
points: {points}
keep: {keep}
"""


@pytest.mark.parametrize("keep", ["summary", "fields"])
def test_disk_estimate_of_a_sweep_store(keep, tmp_path):
    from fhnpde.sweep import load_sweep, run_member, write_template

    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(SWEEP.format(points=3, keep=keep))
    sweep = load_sweep(spec_path)
    store = tmp_path / "s.zarr"
    write_template(sweep, store)
    for i, case in enumerate(sweep.cases):
        run_member(str(store), i, case, 0.3, None, keep == "fields")
    estimate = resources.estimate_sweep(sweep.spec, sweep.base,
                                        block=os.statvfs(tmp_path).f_bsize)
    assert resources.sweep_members(sweep.spec) == sweep.size == 6
    arrays = _store_arrays(store)
    assert estimate.data_bytes == sum(a.nbytes for a in arrays.values())
    assert estimate.disk >= _disk_usage(store)
    assert estimate.disk >= _full_chunks(arrays)


# --- memory: against the resident-set peak of real runs -------------------------------------

# The resident set now (VmRSS) and its peak (VmHWM) of this process. Not getrusage's
# ru_maxrss: Linux carries the parent's peak into it across fork and exec, so a child of a
# big pytest process would report the parent's size.
PEAK = textwrap.dedent("""
    def status(key):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
""")

# The estimate against the resident-set peak of runs of 10^6 nodes (members), for every
# solver family and backend, is measured by benchmarks/resources.py (memory figures belong
# in benchmark scripts: a machine shared with other work makes them noisy).


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_libraries_cover_what_a_fresh_process_loads_for_a_small_run(tmp_path):
    pytest.importorskip("numba")
    code = PEAK + textwrap.dedent("""
        import sys
        from fhnpde.case import load_case
        from fhnpde.driver import run_case
        from fhnpde.resources import estimate_run
        rss = status("VmRSS")
        case = load_case(sys.argv[1], ["time.t_end=5"])
        run_case(case, out=sys.argv[2])
        print(status("VmHWM") - rss, estimate_run(case).memory)
    """)
    for case_file in ("divergent_cn.yaml", "cell_ensemble.yaml"):
        out = subprocess.run([sys.executable, "-c", code, str(CASES / case_file),
                              str(tmp_path / f"{case_file}.zarr")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        peak, estimate = (int(x) for x in out.stdout.split()[-2:])
        assert peak <= estimate, (case_file, peak / 2**20, estimate / 2**20)


# --- refusals from the command line ---------------------------------------------------------

CLI = PEAK + textwrap.dedent("""
    import os, sys
    from fhnpde.cli import main
    rc = main(sys.argv[1:])
    with open(os.environ["MAXRSS_FILE"], "w") as f:
        f.write(str(status("VmHWM") or 0))
    sys.exit(rc)
""")


def _cli(args, tmp_path):
    """``python -m fhnpde ARGS`` (fhnpde.cli.main, as __main__ calls it), its wall time and
    its peak resident set."""
    rss_file = tmp_path / "maxrss"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "MAXRSS_FILE": str(rss_file)})
    wall = time.perf_counter() - t0
    return out, wall, int(rss_file.read_text()) if rss_file.exists() else None


def _assert_refused(out, wall, maxrss, tmp_path, *needles):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("fhnpde: error: ")
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not any(p.suffix == ".zarr" for p in tmp_path.rglob("*"))  # no store created
    assert wall < 20  # Python's start-up and imports; the check itself takes milliseconds
    assert maxrss is not None
    assert maxrss < 400 * 2**20


@pytest.mark.parametrize(("case_file", "sets", "needles"), [
    ("divergent.yaml", ["domain.nx=1000000000000"], []),  # refused (diffusion number or memory)
    ("divergent.yaml", ["domain.nx=1000000000000", "time.dt=0.0001"],
     ["domain.nx: the run needs about", "TiB of memory", "1,000,000,000,000 nodes",
      "coarsen the grid (domain.nx)", "--force"]),
    ("divergent.yaml", ["time.t_end=1e10"],
     ["time: the run needs about", "10,000,000,001 output times", "time.save_every",
      "--force"]),
    ("cell_ensemble.yaml", ["ensemble.size=10000000000"],
     ["ensemble.size: the run needs about", "10,000,000,000 members", "--force"]),
])
def test_run_refuses_what_does_not_fit_in_memory(case_file, sets, needles, tmp_path):
    args = ["run", CASES / case_file, "--out", tmp_path / "out" / "r.zarr"]
    for s in sets:
        args += ["--set", s]
    out, wall, maxrss = _cli(args, tmp_path)
    _assert_refused(out, wall, maxrss, tmp_path, *needles)


def test_run_refuses_a_store_larger_than_the_free_disk(tmp_path):
    free = resources.free_disk(tmp_path)[0]
    # 10^6 nodes x 2 variables x 8 bytes x outputs: 16 MB per output, more than the disk
    outputs = free // (16 * 10**6) + 10
    args = ["run", CASES / "divergent_cn.yaml", "--out", tmp_path / "d.zarr",
            "--set", "domain.nx=1000001", "--set", "time.save_every=0.5",
            "--set", f"time.t_end={0.5 * outputs}"]
    out, wall, maxrss = _cli(args, tmp_path)
    _assert_refused(out, wall, maxrss, tmp_path, "--out: the store needs up to",
                    "(uncompressed)", "free", "time.save_every", "--force")


def test_sweep_of_a_billion_members_is_refused(tmp_path):
    (tmp_path / "big.yaml").write_text(
        f"name: big\nbase: {CASES / 'divergent.yaml'}\nsample: grid\n"
        "vary: {model.params.a: [0.02, 0.14]}\npoints: 1000000000\n")
    out, wall, maxrss = _cli(["sweep", tmp_path / "big.yaml", "--out", tmp_path / "s.zarr"],
                             tmp_path)
    _assert_refused(out, wall, maxrss, tmp_path, "1,000,000,000")


def test_sweep_refuses_members_too_big_to_build(tmp_path):
    (tmp_path / "huge.yaml").write_text(
        f"name: huge\nbase: {CASES / 'divergent.yaml'}\nset: {{domain.nx: 10000000000}}\n"
        "vary: {model.params.a: {values: [0.05, 0.1]}}\n")
    out, wall, maxrss = _cli(["sweep", tmp_path / "huge.yaml", "--out", tmp_path / "s.zarr"],
                             tmp_path)
    _assert_refused(out, wall, maxrss, tmp_path, "base: the sweep needs about",
                    "checking one member", "--force")


def test_sweep_refuses_fields_larger_than_the_free_disk(tmp_path):
    free = resources.free_disk(tmp_path)[0]
    # members x 301 outputs x 100,001 nodes x 16 bytes: 0.48 GB per member
    members = min(90_000, free // (301 * 100_001 * 16) + 10)
    (tmp_path / "f.yaml").write_text(
        f"name: f\nbase: {CASES / 'divergent.yaml'}\nset: {{domain.nx: 100001, time.dt: 0.0001}}\n"
        f"sample: uniform\nsize: {members}\nvary: {{model.params.a: [0.05, 0.1]}}\n"
        "keep: fields\n")
    out, wall, maxrss = _cli(["sweep", tmp_path / "f.yaml", "--out", tmp_path / "s.zarr"],
                             tmp_path)
    _assert_refused(out, wall, maxrss, tmp_path, "--out: the store needs up to",
                    "use keep: summary", "--force")


# --- --force and the large-output note ------------------------------------------------------


@pytest.fixture
def no_room(monkeypatch):
    """What is available: 1 KiB of memory and of disk (nothing real runs out)."""
    monkeypatch.setattr(resources, "available_memory", lambda: 1024)
    monkeypatch.setattr(resources, "free_disk", lambda path: (1024, 4096, Path(path).parent))


def _small_case_file(tmp_path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text((CASES / "divergent.yaml").read_text())
    return path


def test_force_runs_what_the_check_refuses(no_room, tmp_path, capsys):
    from fhnpde.cli import main

    case = _small_case_file(tmp_path)
    args = ["run", str(case), "--out", str(tmp_path / "f.zarr"), "--quiet",
            "--set", "time.t_end=10", "--set", "domain.nx=101"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "of memory" in err[0]
    assert "1 KiB is available" in err[0]
    assert not (tmp_path / "f.zarr").exists()
    assert main([*args, "--force"]) == 0
    err = capsys.readouterr().err
    assert "fhnpde: note: --force: running although the run needs about" in err
    assert "fhnpde: note: --force: writing up to" in err
    assert "error" not in err
    from fhnpde.store import open_run

    ds = open_run(tmp_path / "f.zarr")
    assert ds.attrs["status"] == "complete"
    assert ds.sizes["time"] == 11


def test_force_reaches_the_sweep_check(no_room, tmp_path):
    from fhnpde.sweep import load_sweep, run_sweep

    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP.format(points=2, keep="summary"))
    with pytest.raises(CaseError, match="of memory.*pass --force"):
        load_sweep(spec)
    with pytest.raises(CaseError, match="of memory"):  # refused before any cluster starts
        run_sweep(spec, out=tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()
    sweep = load_sweep(spec, force=True)
    assert sweep.size == 4


def test_run_case_and_check_accept_what_fits(tmp_path):
    case = make_case(SMALL_CABLE)
    estimate = resources.check_run(case, tmp_path / "a.zarr")  # the real machine: it fits
    assert 0 < estimate.memory < resources.available_memory()
    notes = []
    resources.check(estimate, tmp_path / "a.zarr", note=notes.append)
    assert notes == []  # small: no note


def test_a_large_store_that_fits_gets_a_note(tmp_path):
    case = load_case(CASES / "divergent.yaml", ["domain.nx=100001", "time.save_every=0.02"])
    estimate = resources.estimate_run(case)
    assert estimate.disk > resources.LARGE_OUTPUT
    notes = []
    resources.check(estimate, tmp_path / "big.zarr", note=notes.append,
                    memory=estimate.memory + 1, free=estimate.disk + 1)
    assert len(notes) == 1
    assert notes[0].startswith(f"the store {tmp_path / 'big.zarr'} will take up to ")
    assert "GiB (uncompressed)" in notes[0]
    assert "free there" in notes[0]


def test_the_note_reaches_stderr_of_run_and_the_run_goes_on(monkeypatch, tmp_path, capsys):
    from fhnpde.cli import main

    monkeypatch.setattr(resources, "LARGE_OUTPUT", 1000)  # a small run's store is "large"
    case = _small_case_file(tmp_path)
    rc = main(["run", str(case), "--out", str(tmp_path / "n.zarr"), "--quiet",
               "--set", "time.t_end=10", "--set", "domain.nx=101"])
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fhnpde: note: the store ")
    assert (tmp_path / "n.zarr").exists()


def test_available_memory_and_free_disk_read_the_machine(tmp_path):
    avail = resources.available_memory()
    if Path("/proc/meminfo").exists():
        total = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal:")).split()[1]) * 1024
        assert 0 < avail <= total
    free, block, where = resources.free_disk(tmp_path / "not" / "yet" / "there.zarr")
    assert where == tmp_path.resolve() or where == Path(os.path.abspath(tmp_path))
    assert free > 0
    assert block > 0


def test_the_check_takes_milliseconds_for_absurd_sizes(tmp_path):
    case = load_case(CASES / "divergent.yaml", ["domain.nx=1000000000000", "time.dt=0.0001"])
    t0 = time.perf_counter()
    with pytest.raises(CaseError, match="of memory"):
        resources.check_run(case, tmp_path / "x.zarr")
    assert time.perf_counter() - t0 < 0.5
    assert not (tmp_path / "x.zarr").exists()
