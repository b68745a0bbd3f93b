"""Run idempotent tasks on dask.distributed: a LocalCluster here, or an existing scheduler.

This is the engine under ``python -m fhnpde sweep`` and is meant to be reused by any study
made of independent, restartable pieces (``surrogates``' architecture search trains one
candidate per task the same way). The rules it relies on:

- A :class:`Task` is **idempotent**: running it twice leaves the same result behind (a
  sweep member rewrites its own region of the store). That is what makes the scheduler's
  retry of a task whose worker died safe, and what makes a rerun after a crash correct.
- Completion is decided by the caller, from durable state (a flag in a store, a file on
  disk), through ``is_complete``; complete tasks are skipped before anything is submitted,
  and when nothing is left no cluster is started at all.
- A worker process killed mid-task has its task rescheduled on another worker by the
  scheduler (up to ``distributed.scheduler.allowed-failures`` deaths, then the task errors
  with ``KilledWorker``). A task that raises is recorded in :attr:`TaskReport.errors` and
  does not stop the others; it is not retried (our tasks are deterministic, so it would
  raise again) unless ``retries`` says so.

dask is imported only inside :func:`run_tasks`; ``import fhnpde.cluster`` costs nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .case import CaseError

__all__ = ["Task", "TaskReport", "local_cluster", "max_workers", "run_tasks",
           "require_distributed"]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``func(*args)`` run on a worker under the dask key ``key``.

    ``func`` must be importable on the workers (a module-level function), and ``key`` must
    be unique among every task that may share the scheduler (include a fingerprint of the
    study in it), since dask identifies work by key.
    """

    key: str
    func: Callable[..., Any]
    args: tuple = ()


@dataclass
class TaskReport:
    """What :func:`run_tasks` did: results by key, errors by key, counts and wall time."""

    total: int
    skipped: int
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    wall_time_s: float = 0.0
    interrupted: bool = False

    @property
    def ran(self) -> int:
        return len(self.results) + len(self.errors)


def require_distributed(what: str = "this command") -> None:
    """CaseError (exit 2) naming the extra to install when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CaseError(
            f"{what} needs dask.distributed, which is not installed; "
            "install it with: pip install 'fhnpde[distributed]'"
        ) from None


# Worker settings of the LocalClusters started here: dask's statistical profiler samples
# every task's stack every 10 ms (for the dashboard's profile page, which nobody opens on a
# cluster that lives for one command); measured on a 2-core machine it slowed 2.5 s members
# by about 10 % when both workers ran.
_LOCAL_WORKER_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def max_workers() -> int:
    """The most worker processes a local cluster may have: one per core. Every worker runs
    one single-threaded task at a time, so more would only share the cores (and each holds
    its own copy of the imported modules and compiled kernels)."""
    return os.cpu_count() or 1


# Where a local cluster listens: the loopback interface only. Its scheduler accepts any
# client that connects (dask has no authentication unless TLS is configured), and a client
# can run arbitrary code on the workers, so nothing of it may be reachable from the network.
LOOPBACK = "127.0.0.1"


def local_cluster(workers: int | None = None, worker_env: Mapping[str, str] | None = None,
                  dashboard: bool = False):
    """A LocalCluster of ``workers`` single-threaded processes (default: one per core), as
    ``run_tasks`` starts it when no scheduler is given.

    Scheduler and workers listen on 127.0.0.1 only. The scheduler always runs an HTTP
    server; without ``dashboard`` it serves no page at all (no dashboard, no ``/info``
    pages listing workers, logs and call stacks); with ``dashboard`` it serves dask's
    dashboard, also on 127.0.0.1 (``cluster.dashboard_link``). Either way on a free port,
    so that concurrent clusters never collide on dask's default 8787.
    """
    import dask
    from distributed import LocalCluster

    routes = {} if dashboard else {"distributed.scheduler.http.routes": []}
    with dask.config.set(routes):
        return LocalCluster(
            n_workers=workers or max_workers(),
            threads_per_worker=1,
            processes=True,
            host=LOOPBACK,
            scheduler_port=0,
            dashboard_address=f"{LOOPBACK}:0",  # the HTTP server's, dashboard or not
            scheduler_kwargs={"dashboard": dashboard},
            silence_logs=logging.ERROR,
            env={**_LOCAL_WORKER_ENV, **(worker_env or {})},
        )


def _client(scheduler: str | None, workers: int | None, worker_env: Mapping[str, str] | None,
            dashboard: bool = False):
    """A Client on ``scheduler``, or on a new LocalCluster of single-threaded processes."""
    from distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise CaseError(
                f"cannot reach the dask scheduler at {scheduler} ({exc.__class__.__name__}); "
                "check the address (e.g. tcp://host:8786) or leave --scheduler out for a "
                "local cluster",
                key="--scheduler",
            ) from None
    cluster = local_cluster(workers, worker_env, dashboard=dashboard)
    if dashboard:
        import importlib.util

        hint = ("" if importlib.util.find_spec("bokeh")
                else " (its plots need bokeh: pip install bokeh)")
        print(f"dask dashboard: {cluster.dashboard_link}{hint}", file=sys.stderr, flush=True)
    return Client(cluster), cluster


async def _in_worker_thread(func: Callable[..., Any], *args) -> None:
    """Run ``func(*args)`` on a worker in a thread, off its event loop (``Client.run`` with
    ``wait=False`` takes only coroutine functions, and a blocking call on the event loop
    would hold up the worker's messages)."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _progress(total: int, initial: int, desc: str, quiet: bool):
    """A tqdm bar over completed tasks on stderr (none when quiet or not on a terminal)."""
    if quiet or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="task", file=sys.stderr)


def run_tasks(
    tasks: Sequence[Task],
    *,
    is_complete: Callable[[Task], bool] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 0,
    on_result: Callable[[Task, Any], None] | None = None,
    on_error: Callable[[Task, BaseException], None] | None = None,
    desc: str = "tasks",
    quiet: bool = False,
    worker_env: Mapping[str, str] | None = None,
    warm_up: tuple[Callable[..., Any], tuple] | None = None,
    before_submit: Callable[[], None] | None = None,
    dashboard: bool = False,
) -> TaskReport:
    """Run the tasks not yet complete on a dask cluster; return what happened.

    ``scheduler``: address of an existing scheduler (``tcp://host:8786``); without it a
    LocalCluster of ``workers`` single-threaded processes (default: one per core) is
    started and closed again (listening on 127.0.0.1 only, with dask's dashboard when
    ``dashboard``: its address is printed on stderr). ``on_result(task, result)`` /
    ``on_error(task, exc)`` run on the client as each task ends, in completion order (for
    bookkeeping that only the client may do, such as writing store attributes). A progress
    bar follows completed tasks. Ctrl-C cancels the outstanding tasks, closes the cluster and
    re-raises.

    Start-up: once connected, ``warm_up = (func, args)`` is started on every worker without
    waiting for it (``Client.run(..., wait=False)``: imports and compiled-kernel loading a
    task would otherwise pay on its worker), then ``before_submit()`` runs here (client-side
    preparation such as writing a store's template), so the two overlap; then the tasks are
    submitted. ``is_complete`` is asked before any of this, so ``before_submit`` must not
    change what it answers.
    """
    tasks = list(tasks)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    pending = [t for t in tasks if is_complete is None or not is_complete(t)]
    report = TaskReport(total=len(tasks), skipped=len(tasks) - len(pending))
    if not pending:
        return report
    require_distributed()
    from distributed import as_completed

    wall0 = _time.perf_counter()
    bar = _progress(len(tasks), report.skipped, desc, quiet)
    client, cluster = _client(scheduler, workers, worker_env, dashboard)
    futures = {}
    try:
        if warm_up is not None:
            func, args = warm_up
            client.run(_in_worker_thread, func, *args, wait=False)
        if before_submit is not None:
            before_submit()
        by_key = {t.key: t for t in pending}
        for t in pending:
            futures[t.key] = client.submit(t.func, *t.args, key=t.key, pure=False,
                                           retries=retries)
        for fut in as_completed(list(futures.values())):
            task = by_key[fut.key]
            if fut.status == "finished":
                result = fut.result()
                report.results[task.key] = result
                if on_result is not None:
                    on_result(task, result)
            else:
                exc = fut.exception()
                report.errors[task.key] = exc
                if on_error is not None:
                    on_error(task, exc)
            fut.release()
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        report.interrupted = True
        client.cancel(list(futures.values()))
        raise
    finally:
        report.wall_time_s = _time.perf_counter() - wall0
        if bar is not None:
            bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return report

