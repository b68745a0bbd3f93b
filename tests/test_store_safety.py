"""Trust in the store: what --overwrite may delete, one writer at a time, failed writes and
signals end in a store whose status tells the truth (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from fhnpde import signals
from fhnpde.case import CaseError
from fhnpde.driver import run_case
from fhnpde.storefs import (
    WriterLock,
    foreign_entries,
    lock_path,
    process_start,
    written_by_us,
)
from tests.helpers import SMALL_CABLE, make_case, signal_run, wait_for_outputs

ROOT = Path(__file__).resolve().parents[1]
DIVERGENT = str(ROOT / "cases" / "divergent.yaml")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and rlimits")


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhnpde", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, **kwargs)


def _one_line_error(proc, status):
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _small_store(path: Path, *sets) -> None:
    result = run_case(make_case(SMALL_CABLE, "time.save_every=0.5", *sets), out=path)
    assert result.status == "complete"


# --- what --overwrite may delete ------------------------------------------------------------


def test_overwrite_never_deletes_a_users_files(tmp_path):
    folder = tmp_path / "P"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "zarr.json").write_text("{}")
    proc = _cli("run", DIVERGENT, "--quiet", "--out", str(folder), "--overwrite")
    line = _one_line_error(proc, 2)
    assert "not a store written by fhnpde" in line
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_store_of_ours_holding_a_users_file(tmp_path):
    store = tmp_path / "s.zarr"
    _small_store(store)
    (store / "notes.txt").write_text("mine")
    (store / "v" / "c" / "README").write_text("mine too")
    assert foreign_entries(store) == ["notes.txt", "v/c/README"]
    with pytest.raises(CaseError, match="holds files fhnpde did not write"):
        run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    assert (store / "notes.txt").read_text() == "mine"
    assert xr.open_zarr(store).attrs["status"] == "complete"


def test_overwrite_replaces_a_store_holding_what_a_killed_writer_was_writing(tmp_path):
    """A writer killed in the middle of a file leaves its half-written temporary (a chunk's,
    an array's or the root's zarr.json, ours or zarr's naming): part of the store, which
    --overwrite may replace; a user's file beside them still stops it."""
    store = tmp_path / "s.zarr"
    _small_store(store)
    leftovers = [store / "v" / "c" / "0" / ".0.4321.partial",
                 store / "w" / ".zarr.json.4321.partial",
                 store / "zarr.json.4321.partial", store / ".zarr.json.4321.partial",
                 store / "v" / "c" / "1" / ("0." + "0123456789abcdef" * 2 + ".partial")]
    for f in leftovers:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half")
    (store / "v" / "c" / "0" / "notes.partial").write_bytes(b"mine")
    with pytest.raises(CaseError, match="notes.partial"):
        run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    (store / "v" / "c" / "0" / "notes.partial").unlink()
    assert run_case(make_case(SMALL_CABLE), out=store, overwrite=True).status == "complete"
    assert not any(f.exists() for f in leftovers)


def test_overwrite_refuses_a_foreign_zarr_store_a_symlink_and_a_file(tmp_path):
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_zarr(foreign, zarr_format=3, consolidated=False)
    assert not written_by_us(foreign)
    with pytest.raises(CaseError, match="not a store written by fhnpde"):
        run_case(make_case(SMALL_CABLE), out=foreign, overwrite=True)
    assert xr.open_zarr(foreign, consolidated=False)["a"].values.tolist() == [0.0, 1.0, 2.0]

    ours = tmp_path / "ours.zarr"
    _small_store(ours)
    link = tmp_path / "link.zarr"
    link.symlink_to(ours)
    with pytest.raises(CaseError, match="symbolic link"):
        run_case(make_case(SMALL_CABLE), out=link, overwrite=True)
    assert link.is_symlink()
    assert (ours / "zarr.json").exists()

    plain = tmp_path / "data.csv"
    plain.write_text("1,2,3")
    with pytest.raises(CaseError, match="not a directory"):
        run_case(make_case(SMALL_CABLE), out=plain, overwrite=True)
    assert plain.read_text() == "1,2,3"


def test_overwrite_replaces_a_store_of_ours_and_leaves_nothing_beside_it(tmp_path):
    store = tmp_path / "s.zarr"
    _small_store(store)
    result = run_case(make_case(SMALL_CABLE, "time.save_every=1.0"), out=store, overwrite=True)
    assert result.status == "complete"
    ds = xr.open_zarr(store)
    assert ds.sizes["time"] == 6  # the new run's outputs, not the old run's 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no lock, no staging


def test_overwrite_keeps_the_old_store_when_the_new_run_cannot_start(tmp_path):
    store = tmp_path / "s.zarr"
    _small_store(store)
    before = xr.open_zarr(store).v.values
    # refused at validation (unstable dt), then refused while the new store is being built
    proc = _cli("run", DIVERGENT, "--quiet", "--out", str(store), "--overwrite",
                "--set", "time.dt=0.05")
    _one_line_error(proc, 2)
    from fhnpde import store as store_module

    def broken_build(self, staging):
        raise OSError(28, "No space left on device")

    original = store_module.StoreWriter._build
    store_module.StoreWriter._build = broken_build
    try:
        with pytest.raises(CaseError, match="No space left on device"):
            run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    finally:
        store_module.StoreWriter._build = original
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_surrogates_generate_overwrite_replaces_only_its_own_data_store(tmp_path):
    pytest.importorskip("torch")
    from surrogates import CONFIGS

    def generate(path, *extra):
        return subprocess.run(
            [sys.executable, "-m", "surrogates", "generate", str(CONFIGS / "neural_ode.yaml"),
             "--set", f"data.path={path}", "--set", "data.train.size=4",
             "--set", "data.validation.size=4", "--set", "data.steps=10",
             "--set", "data.solver.backend=numpy", *extra],
            capture_output=True, text=True, timeout=120, cwd=ROOT)

    folder = tmp_path / "P"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "zarr.json").write_text("{}")
    line = _one_line_error(generate(folder, "--overwrite"), 2)
    assert "not a store written by fhnpde" in line
    assert (folder / "thesis.tex").exists()

    data = tmp_path / "d.zarr"
    assert generate(data).returncode == 0
    assert generate(data, "--overwrite", "--set", "data.train.size=6").returncode == 0
    assert xr.open_zarr(data).sizes["train_trajectory"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P", "d.zarr"]


# --- one writer at a time -------------------------------------------------------------------


def _long_run(out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fhnpde", "run", DIVERGENT, "--quiet", "--out", str(out),
         "--set", "time.t_end=2000", "--set", "output.chunk_mb=0.02",
         "--set", "solver.backend=numpy", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "S.zarr"
    first = _long_run(out)
    try:
        wait_for_outputs(out, first)
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == first.pid
        assert holder["host"] == socket.gethostname()
        proc = _cli("run", DIVERGENT, "--quiet", "--out", str(out), "--overwrite",
                    "--set", "time.t_end=10")
        line = _one_line_error(proc, 2)
        assert f"being written by pid {first.pid}" in line
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    finally:
        first.kill()
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    times = ds.time.values
    assert (np.diff(times) > 0).all()  # one writer's outputs only
    assert not lock_path(out).exists()


def test_a_stale_lock_is_broken_and_a_live_one_is_not(tmp_path):
    store = tmp_path / "s.zarr"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock_path(store).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                            "start": "1", "since": 0}))
    _small_store(store)  # the dead writer's lock does not stop a new run
    assert not lock_path(store).exists()

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process on this host holds it
        lock_path(store).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                "start": process_start(sleeper.pid)}))
        with pytest.raises(CaseError, match=f"being written by pid {sleeper.pid}"):
            WriterLock.acquire(store)
        with pytest.raises(CaseError, match=f"being written by pid {sleeper.pid}"):
            run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same pid, now dead: broken; the store is replaced
    assert run_case(make_case(SMALL_CABLE), out=store, overwrite=True).status == "complete"
    live = WriterLock.acquire(store)  # this process: the same process may not lock twice
    try:
        with pytest.raises(CaseError, match="already being written by this process"):
            WriterLock.acquire(store)
    finally:
        live.release()
    assert not lock_path(store).exists()
    # a lock from another host cannot be judged: refused, and the message says how to clear it
    lock_path(store).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0}))
    with pytest.raises(CaseError, match="delete .*fhnpde-lock"):
        run_case(make_case(SMALL_CABLE), out=store, overwrite=True)


# --- failed writes ------------------------------------------------------------------------------


def _limit_file_size(limit_bytes: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


def test_disk_full_ends_the_run_failed_with_one_line(tmp_path):
    out = tmp_path / "S.zarr"
    # `ulimit -f 200` (100 KiB per file): the divergent case's chunks do not fit, nor do
    # numba's cache files of freshly compiled kernels (a fresh cache makes it compile)
    env = {**os.environ, "FHNPDE_CACHE_DIR": str(tmp_path / "cache")}
    proc = _cli("run", DIVERGENT, "--quiet", "--out", str(out),
                "--set", "output.chunk_mb=2", preexec_fn=_limit_file_size(200 * 512), env=env)
    line = _one_line_error(proc, 1)
    assert str(out) in line
    assert "File too large" in line
    assert "marked failed" in line
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "failed"
    assert "File too large" in ds.attrs["error"]
    assert ds.sizes["time"] == ds.v.shape[0] == ds.w.shape[0]
    assert not lock_path(out).exists()


def _zarr_writes_fail_at(monkeypatch, n: int, partial: bool) -> list:
    """Make the n-th file write of the store writer fail with ENOSPC (after writing half, if
    partial)."""
    from fhnpde import zarrfiles

    real = zarrfiles.put
    calls = []

    def put(path, *parts):
        calls.append(path)
        if len(calls) == n:
            error = OSError(28, "No space left on device", str(path))
            if partial:  # the disk fills half-way through the file
                data = b"".join(parts)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data[: len(data) // 2])
                tmp.unlink()  # what put does when its write fails
            raise error
        return real(path, *parts)

    monkeypatch.setattr(zarrfiles, "put", put)
    return calls


def test_every_write_of_a_run_failing_in_turn_leaves_a_truthful_store(tmp_path, monkeypatch):
    """Fault injection: the n-th write fails, for every n a run makes; the run ends failed (or
    refused before its store exists) and the store holds exactly the outputs written before."""
    case = make_case(SMALL_CABLE, "time.save_every=0.5", "output.chunk_mb=0.004")  # 3 per chunk
    reference = tmp_path / "ref.zarr"
    with monkeypatch.context() as m:
        calls = _zarr_writes_fail_at(m, 10**9, False)
        run_case(case, out=reference)
    total = len(calls)
    ref = xr.open_zarr(reference)
    assert total > 20
    statuses = set()
    for n in range(1, total + 1):
        out = tmp_path / f"s{n}.zarr"
        with monkeypatch.context() as m:
            _zarr_writes_fail_at(m, n, partial=n % 2 == 0)
            try:
                result = run_case(case, out=out)
            except CaseError as exc:  # the empty store itself could not be made
                result = exc
        if isinstance(result, CaseError):
            assert "No space left on device" in str(result)
            assert not out.exists()
            statuses.add("refused")
            continue
        statuses.add(result.status)
        ds = xr.open_zarr(out)  # opens with plain xarray, whatever failed
        if result.status == "complete":  # only the final metadata writes failed
            assert result.final_status_error or ds.attrs["status"] == "complete"
            continue
        assert result.status == "failed", n
        assert "No space left on device" in result.message
        assert ds.attrs["status"] in ("failed", "running"), n
        kept = ds.sizes["time"]
        assert ds.v.shape[0] == ds.w.shape[0] == kept
        np.testing.assert_array_equal(ds.time.values, ref.time.values[:kept])
        np.testing.assert_array_equal(ds.v.values, ref.v.values[:kept])
        assert not lock_path(out).exists()
    assert {"refused", "failed"} <= statuses


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_the_run_interrupted(tmp_path, signum, status):
    out = tmp_path / "S.zarr"
    proc = _long_run(out)
    err = signal_run(proc, out, signum)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert signal.Signals(signum).name in err
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    stats = ds.attrs["stats"]
    stats = json.loads(stats) if isinstance(stats, str) else stats
    assert stats["t_reached"] > 0
    # the buffered outputs were written too: everything up to the last full output
    assert ds.time.values[-1] == pytest.approx(np.floor(stats["t_reached"]))
    assert np.isfinite(ds.v.values).all()
    assert not lock_path(out).exists()


def test_double_ctrl_c_10_ms_apart_still_marks_the_store(tmp_path):
    out = tmp_path / "S.zarr"
    proc = _long_run(out)
    err = signal_run(proc, out, signal.SIGINT, signal.SIGINT, gap=0.01)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert xr.open_zarr(out).attrs["status"] == "interrupted"


def test_ctrl_c_right_after_the_rename_is_finished_like_any_other(tmp_path, monkeypatch):
    from fhnpde import storefs

    real = storefs.install

    def install_then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # lands while the store is being opened

    monkeypatch.setattr(storefs, "install", install_then_ctrl_c)
    old = {s: signal.getsignal(s) for s in signals.HANDLED}
    signals.install()
    try:
        result = run_case(make_case(SMALL_CABLE), out=tmp_path / "s.zarr")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert result.status == "interrupted"
    assert result.exit_status == 130
    assert xr.open_zarr(tmp_path / "s.zarr").attrs["status"] == "interrupted"


def test_held_signals_are_raised_after_the_block_and_dropped_when_swallowed():
    old = {s: signal.getsignal(s) for s in signals.HANDLED}
    signals.install()
    try:
        done = []

        def held(signum, block, then=None):
            with block():
                os.kill(os.getpid(), signum)
                time.sleep(0.01)
                done.append(signum)  # the block runs to its end first
                if then is not None:
                    raise then

        with pytest.raises(signals.Terminated) as info:
            held(signal.SIGTERM, signals.deferred)
        assert done == [signal.SIGTERM]
        assert signals.exit_status(info.value) == 143
        held(signal.SIGINT, signals.swallowed)  # dropped: nothing raised
        # a block's own exception wins over a held signal
        with pytest.raises(ValueError, match="own"):
            held(signal.SIGINT, signals.deferred, ValueError("own"))
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_sweep_on_sigterm_is_interrupted_and_a_second_writer_refused(tmp_path):
    pytest.importorskip("distributed")
    import copy

    import yaml

    base = {**copy.deepcopy(SMALL_CABLE), "name": "small",
            "time": {"t_end": 5000.0, "dt": 0.05, "save_every": 10.0}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "long", "base": "base.yaml",
         "vary": {"initial.v.amplitude": {"values": [0.5, 0.6, 0.7, 0.8]}}}))
    out = tmp_path / "sweep.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhnpde", "sweep", str(tmp_path / "sweep.yaml"), "--workers", "1",
         "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while not (out / "zarr.json").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the sweep never wrote its store"
            time.sleep(0.1)
        second = _cli("sweep", str(tmp_path / "sweep.yaml"), "--workers", "1", "--quiet",
                      "--out", str(out), "--overwrite")
        assert f"being written by pid {proc.pid}" in _one_line_error(second, 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    assert ds.attrs["members_pending"] >= 1
    assert not lock_path(out).exists()


def test_kernel_cache_pruning_removes_only_old_kernel_caches(tmp_path):
    from fhnpde.backends import prune_kernel_caches

    folder = tmp_path / "numba"
    for i, name in enumerate(["0123456789abcdef", "1123456789abcdef", "2123456789abcdef"]):
        sub = folder / name / "fhnpde_ab12"
        sub.mkdir(parents=True)
        (sub / "k.py311.nbi").write_bytes(b"")
        (sub / "k.py311.1.nbc").write_bytes(b"")
        os.utime(folder / name, (i, i))
    mine = folder / "3123456789abcdef"  # named like a cache, holding a user's file
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    os.utime(mine, (0, 0))
    (folder / "project").mkdir()  # anything else a user keeps there
    os.utime(folder / "project", (0, 0))
    prune_kernel_caches(folder, keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["2123456789abcdef", "3123456789abcdef",
                                                        "project"]
    assert (mine / "thesis.tex").exists()


def test_sigterm_stops_a_run_inside_one_long_output_interval(tmp_path):
    """A run with one output interval of 5e7 steps stops within seconds: the loop advances
    in blocks and handles signals between them."""
    out = tmp_path / "S.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhnpde", "run", DIVERGENT, "--quiet", "--out", str(out),
         "--set", "time.t_end=1e6", "--set", "time.save_every=null"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (out / "zarr.json").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert waited < 10
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    assert ds.sizes["time"] == 1  # the initial state; the interval never ended
    assert ds.attrs["stats"]["t_reached"] < 1e6  # stopped between two blocks


def test_blocks_do_not_change_the_numbers(monkeypatch):
    from fhnpde import driver
    from fhnpde.api import solve

    case = make_case(SMALL_CABLE, "time.save_every=1.0")
    whole = solve(case)
    monkeypatch.setattr(driver, "BLOCK_UPDATES", 81 * 3)  # 3 steps per advance call
    blocked = solve(case)
    np.testing.assert_array_equal(blocked.v.values, whole.v.values)
    assert blocked.attrs["stats"]["steps"] == whole.attrs["stats"]["steps"] == 100


def test_a_sweep_whose_final_status_cannot_be_written_says_so_in_one_line(tmp_path, monkeypatch,
                                                                            capsys):
    pytest.importorskip("distributed")
    import copy

    import yaml

    from fhnpde import store
    from fhnpde.cli import main

    base = {**copy.deepcopy(SMALL_CABLE), "name": "small"}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "tiny", "base": "base.yaml", "vary": {"initial.v.amplitude": {"values": [1.0]}}}))

    def full_disk(path, attrs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_root_attributes", full_disk)
    code = main(["sweep", str(tmp_path / "sweep.yaml"), "--workers", "1", "--quiet",
                 "--out", str(tmp_path / "s.zarr")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0
    assert "No space left on device" in err
    assert str(tmp_path / "s.zarr") in err
    assert not lock_path(tmp_path / "s.zarr").exists()


def test_a_killed_writer_leaves_a_readable_store_that_says_so(tmp_path):
    """SIGKILL cannot be handled: the store keeps `running` and every flushed output, and
    fhnpde's reader tells a live writer from one that is gone (its lock is stale)."""
    import fhnpde

    out = tmp_path / "S.zarr"
    proc = _long_run(out)
    try:
        wait_for_outputs(out, proc)
        live = fhnpde.open_run(out)
        assert (live.attrs["status"], live.attrs["writer"]) == ("running", "live")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    ds = fhnpde.open_run(out)
    assert (ds.attrs["status"], ds.attrs["writer"]) == ("running", "gone")
    assert ds.sizes["time"] >= 2
    assert np.isfinite(ds.v.values).all()
    # the next writer breaks the stale lock and may replace the store
    assert run_case(make_case(SMALL_CABLE), out=out, overwrite=True).status == "complete"
    assert "writer" not in fhnpde.open_run(out).attrs


def test_signal_handlers_are_set_only_from_the_main_thread():
    """install() and ignore_from_now() are no-ops in another thread (signal handlers belong
    to the main thread), without raising."""
    import signal
    import threading

    from fhnpde import signals

    before = {s: signal.getsignal(s) for s in signals.HANDLED}
    errors = []

    def other():
        try:
            signals.install()
            signals.ignore_from_now()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []
    assert {s: signal.getsignal(s) for s in signals.HANDLED} == before


def test_a_live_writer_is_named_before_its_files_are_judged(tmp_path):
    """A store with a live writer is refused as busy, whatever its files look like at that
    moment (a writer's temporary renamed into place during the scan is not foreign); and a
    temporary that is gone by the time it is looked at is the writer's, one that is a
    folder or a link is not."""
    store = tmp_path / "s.zarr"
    _small_store(store)
    (store / "notes.txt").write_text("a user's file")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(store).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                "start": process_start(sleeper.pid)}))
        with pytest.raises(CaseError, match=f"being written by pid {sleeper.pid}"):
            run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    finally:
        sleeper.kill()
        sleeper.wait()
        lock_path(store).unlink()
    with pytest.raises(CaseError, match="notes.txt"):  # no live writer: the file is judged
        run_case(make_case(SMALL_CABLE), out=store, overwrite=True)
    (store / "notes.txt").unlink()
    from fhnpde.storefs import _file_or_gone

    gone = store / "v" / ".zarr.json.4248.partial"
    assert _file_or_gone(gone)
    gone.mkdir()
    assert not _file_or_gone(gone)
    gone.rmdir()
    gone.symlink_to(store / "v" / "zarr.json")
    assert not _file_or_gone(gone)
    gone.unlink()
