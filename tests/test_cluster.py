"""The local dask clusters of ``python -m fhnpde sweep`` and ``python -m surrogates search``
(fhnpde/cluster.py) are reachable from this machine only, and serve no web page unless a
dashboard is asked for.

A dask scheduler runs whatever a connecting client submits, without authentication, so a
cluster listening on every interface lends the machine to the network. Each test starts a
LocalCluster as the commands do and inspects the sockets its processes listen on.
"""

from __future__ import annotations

import operator
import urllib.error
import urllib.request

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
psutil = pytest.importorskip("psutil", reason="psutil (a dask.distributed dependency) missing")

from fhnpde.cluster import Task, local_cluster, max_workers, run_tasks  # noqa: E402

PAGES = ("/status", "/info/main/workers.html", "/json/counts.json", "/health", "/metrics")


def listening(cluster) -> list[tuple[str, int]]:
    """(address, port) of every socket that this process and its children listen on."""
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found


def http_status(port: int, page: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_local_cluster_listens_on_loopback_and_serves_no_page_by_default():
    with local_cluster(1) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        worker_addresses = list(cluster.scheduler_info["workers"])
        assert worker_addresses
        assert all(a.startswith("tcp://127.0.0.1:") for a in worker_addresses)
        sockets = listening(cluster)
        assert len(sockets) >= 3  # scheduler, its HTTP server, the worker (and its nanny)
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, sockets
        port = cluster.scheduler.http_server.port
        assert port != 8787  # a free port: concurrent clusters do not collide
        assert {page: http_status(port, page) for page in PAGES} == dict.fromkeys(PAGES, 404)


def test_local_cluster_serves_the_dashboard_on_loopback_when_asked():
    # /status is the dashboard (or, without bokeh, dask's page asking to install it)
    with local_cluster(1, dashboard=True) as cluster:
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
        assert {ip for ip, _ in listening(cluster)} == {"127.0.0.1"}
        port = cluster.scheduler.http_server.port
        assert http_status(port, "/status") == 200
        assert http_status(port, "/info/main/workers.html") == 200


@pytest.mark.parametrize("dashboard", [False, True])
def test_run_tasks_prints_the_dashboard_address_only_when_asked(capsys, dashboard):
    tasks = [Task(f"test-cluster-add-{dashboard}-{i}", operator.add, (i, 1)) for i in range(3)]
    report = run_tasks(tasks, workers=1, quiet=True, dashboard=dashboard)
    assert sorted(report.results.values()) == [1, 2, 3]
    err = capsys.readouterr().err
    assert ("dask dashboard: http://127.0.0.1:" in err) is dashboard


def test_max_workers_is_one_per_core():
    import os

    assert max_workers() == (os.cpu_count() or 1)


def test_sweep_command_prints_the_dashboard_of_its_local_cluster_when_asked(tmp_path, capsys):
    import yaml

    from fhnpde.cli import main
    from tests.helpers import SMALL_CABLE

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(SMALL_CABLE))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "dash", "base": "base.yaml", "vary": {"model.params.a": {"values": [0.1]}}}))
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--workers", "1", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "a.zarr")]) == 0
    assert "dashboard" not in capsys.readouterr().err
    assert main([*args, str(tmp_path / "b.zarr"), "--dashboard"]) == 0
    assert "dask dashboard: http://127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize("program", ["fhnpde", "surrogates"])
def test_dashboard_with_an_existing_scheduler_is_refused(tmp_path, capsys, program):
    """--dashboard (and fhnpde's --workers) describe the local cluster: with --scheduler
    they would be silently ignored, so they are refused before anything is read."""
    if program == "fhnpde":
        from fhnpde.cli import main
    else:
        from surrogates.__main__ import main
    command = "sweep" if program == "fhnpde" else "search"
    code = main([command, str(tmp_path / "never-read.yaml"), "--dashboard",
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--dashboard: applies to the local cluster only" in err
