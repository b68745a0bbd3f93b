"""Where stores live on disk: whose a store is, who is writing it, and how one replaces another.

Three rules keep a user's files safe (``docs/reliability.md``):

- **Only our own stores are replaced.** ``--overwrite`` replaces a path only if it is a
  directory holding a zarr store whose root attributes carry ``fhnpde_version`` (every store
  fhnpde and surrogates write does) and nothing else: every entry in it must be the store's
  root metadata or one of the arrays its consolidated metadata names (each holding only its
  ``zarr.json`` and chunk files). A symbolic link, a file, a foreign zarr
  store or a store with a user's file inside is refused with one line, and nothing is deleted.
- **A store being written is locked.** The writer holds a lock file beside the store,
  ``.NAME.fhnpde-lock`` in the same directory (created with ``O_EXCL``; it names the
  writer's pid, host and process start time), from before the store is made until its final
  status is written. A second writer is refused while that process lives; a lock whose
  process is gone (same host, pid dead or reused) is stale and is broken.
- **A new store is built beside the old one and swapped in.** The writer builds the complete
  empty store in a fresh hidden directory next to the path and renames it into place only
  once it exists; an old store is exchanged with it atomically (``renameat2(RENAME_EXCHANGE)``
  on Linux, two renames elsewhere) and removed afterwards, so a run that cannot start
  (``--set time.t_end=1e10``, a bad path) leaves the old store as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time as _time
from pathlib import Path

from .case import CaseError

LOCK_SUFFIX = ".fhnpde-lock"
OWNER_ATTR = "fhnpde_version"
_MAX_METADATA_BYTES = 16 * 2**20
_CHUNK_NAME = re.compile(r"^[0-9]+$")
#: a file a writer of the store was writing when it was killed: ``fhnpde.zarrfiles.put``'s
#: ``.NAME.PID.partial`` (a chunk or a ``zarr.json``), ``store.write_root_attributes``'
#: ``zarr.json.PID.partial``, zarr's ``NAME.UUID.partial``; part of the store, not foreign
_PARTIAL_NAME = re.compile(r"^(\.?([0-9]+|zarr\.json)\.[0-9]+|[0-9]+\.[0-9a-f]{32})\.partial$")


class StoreBusy(CaseError):
    """Another live process is writing the store."""


# --- whose store is it ----------------------------------------------------------------------


def root_metadata(path: Path) -> dict | None:
    """The root ``zarr.json`` of a zarr v3 group at ``path`` as a mapping, or None."""
    meta = path / "zarr.json"
    try:
        if not meta.is_file() or meta.stat().st_size > _MAX_METADATA_BYTES:
            return None
        data = json.loads(meta.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("node_type") == "group" else None


def written_by_us(path: Path) -> bool:
    """True if ``path`` holds a zarr group whose attributes say fhnpde (or surrogates) wrote it."""
    meta = root_metadata(path)
    return bool(meta) and isinstance(meta.get("attributes"), dict) and (
        OWNER_ATTR in meta["attributes"])


def _members(path: Path, meta: dict) -> set[str]:
    """Top-level member names of the store: from its consolidated metadata, else from the
    sub-directories that are zarr nodes."""
    consolidated = meta.get("consolidated_metadata")
    if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
        return {str(k).split("/")[0] for k in consolidated["metadata"]}
    return {p.name for p in path.iterdir() if p.is_dir() and (p / "zarr.json").is_file()}


def _file_or_gone(entry: Path) -> bool:
    """A writer's temporary is a plain file, or already gone (renamed into place between
    the listing and this look: a writer's atomic write, not something foreign)."""
    return not entry.is_symlink() and (entry.is_file() or not os.path.lexists(entry))


def _foreign_in_array(array: Path) -> list[str]:
    """Entries in an array directory that are neither its ``zarr.json`` nor chunk files."""
    found = []
    for entry in array.iterdir():
        if entry.name == "zarr.json" and entry.is_file() and not entry.is_symlink():
            continue
        if _PARTIAL_NAME.match(entry.name) and _file_or_gone(entry):
            continue
        if entry.name == "c" and entry.is_dir() and not entry.is_symlink():
            for root, dirs, files in os.walk(entry):
                for name in (*dirs, *files):
                    full = Path(root) / name
                    if not (_CHUNK_NAME.match(name) or _PARTIAL_NAME.match(name)) \
                            or full.is_symlink():
                        found.append(str(full.relative_to(array.parent)))
            continue
        found.append(str(entry.relative_to(array.parent)))
    return found


def foreign_entries(path: Path) -> list[str]:
    """What in the directory ``path`` is not part of our store (relative paths, sorted)."""
    meta = root_metadata(path) or {}
    members = _members(path, meta)
    found: list[str] = []
    for entry in path.iterdir():
        if entry.name == "zarr.json" and entry.is_file() and not entry.is_symlink():
            continue
        if _PARTIAL_NAME.match(entry.name) and _file_or_gone(entry):
            continue
        if entry.name in members and entry.is_dir() and not entry.is_symlink():
            found.extend(_foreign_in_array(entry))
            continue
        found.append(entry.name)
    return sorted(found)


def check_replaceable(path: Path, key: str = "--out") -> None:
    """Raise CaseError unless ``path`` is a store we wrote, with nothing else inside it."""
    if path.is_symlink():
        raise CaseError(
            f"{path} is a symbolic link; --overwrite replaces only a store fhnpde wrote at "
            "that very path, so remove the link or choose another path", key=key)
    if not path.is_dir():
        raise CaseError(
            f"{path} exists and is not a directory; fhnpde replaces only a store it wrote, "
            "so choose another path", key=key)
    if not any(path.iterdir()):
        return  # an empty folder: nothing in it to lose
    if not written_by_us(path):
        raise CaseError(
            f"{path} is not a store written by fhnpde (no {OWNER_ATTR} in its zarr.json); "
            "refusing to replace it, choose another path", key=key)
    foreign = foreign_entries(path)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        shown = ", ".join(foreign[:3]) + more
        raise CaseError(
            f"{path} holds files fhnpde did not write ({shown}); refusing to replace it, "
            "move them out or choose another path", key=key)


# --- the writer's lock ----------------------------------------------------------------------


def hostname() -> str:
    """This machine's host name, as ``socket.gethostname()`` gives it (on POSIX the node
    name of ``uname``, which is what ``gethostname`` returns, without importing socket)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = _time.strftime(" since %Y-%m-%d %H:%M:%S", _time.localtime(since)) if isinstance(
        since, int | float) else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when}"


def lock_path(store: Path) -> Path:
    """The lock file of the store at ``store``: beside it, in the same directory."""
    store = Path(store)
    name = f".{store.name}{LOCK_SUFFIX}"
    if len(os.fsencode(name)) > 255:
        import hashlib

        name = f".{hashlib.sha256(os.fsencode(store.name)).hexdigest()[:24]}{LOCK_SUFFIX}"
    return store.parent / name


def read_lock(store: Path) -> dict | None:
    """The lock's holder (pid, host, start, since), {} if unreadable, None if unlocked."""
    try:
        text = lock_path(store).read_text()
    except (FileNotFoundError, NotADirectoryError):  # no lock (or no such folder)
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_is_stale(holder: dict) -> bool:
    """True if the process that wrote ``holder`` is known to be gone (same host only)."""
    if holder.get("host") != hostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if not _alive(pid):
        return True
    start = holder.get("start")
    return start is not None and process_start(pid) not in (None, start)


def _busy(store: Path, holder: dict, key: str) -> StoreBusy:
    who = _describe(holder) if holder else "another process (its lock is unreadable)"
    return StoreBusy(f"{store} is being written by {who}; wait for that run to end or choose "
                     f"another path (if no such process exists, delete {lock_path(store)})",
                     key=key)


def writer_state(store: Path) -> str:
    """Who is writing the store at ``store`` now: ``live`` (a lock held by a process that runs,
    or on another host, which cannot be judged), or ``gone`` (no lock, or its process ended).

    A store whose ``status`` says ``running`` with its writer ``gone`` was stopped by
    something no handler sees (SIGKILL, an OOM kill, a power cut): it holds the outputs of
    its last flush."""
    holder = read_lock(Path(store))
    if holder is None or (holder and lock_is_stale(holder)):
        return "gone"
    return "live"


class WriterLock:
    """The exclusive lock a writer holds on a store's path (see the module's docstring)."""

    def __init__(self, store: Path, holder: dict):
        self.store = Path(store)
        self.path = lock_path(self.store)
        self.holder = holder

    @classmethod
    def acquire(cls, store: str | Path, key: str = "--out") -> WriterLock:
        """Take the lock of ``store``; StoreBusy if a live process holds it."""
        store = Path(store)
        path = lock_path(store)
        pid = os.getpid()
        holder = {"pid": pid, "host": hostname(), "start": process_start(pid),
                  "since": round(_time.time(), 3)}
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                found = read_lock(store)
                if found is None:
                    continue  # released meanwhile: try again
                if found and found.get("pid") == pid and found.get("host") == holder["host"]:
                    raise CaseError(f"{store} is already being written by this process",
                                    key=key) from None
                if not found or not lock_is_stale(found):
                    raise _busy(store, found, key) from None
                cls._break(path)
                continue
            except OSError as exc:
                raise CaseError(f"cannot lock {store} ({exc.strerror or exc}); choose a "
                                "writable path", key=key) from None
            try:
                os.write(fd, json.dumps(holder).encode())
            finally:
                os.close(fd)
            return cls(store, holder)
        raise StoreBusy(f"{store}: could not take its lock (other writers keep racing for it); "
                        "try again", key=key)

    @staticmethod
    def _break(path: Path) -> None:
        """Move a stale lock aside and remove it (only one of several racers wins the rename)."""
        aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)
            aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still ours (never another writer's)."""
        if read_lock(self.store) == self.holder:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# --- building beside and swapping in ----------------------------------------------------------


STAGING_PREFIX = ".fhnpde-creating-"


def fresh_dir(parent: Path, prefix: str) -> Path:
    """A new directory ``parent/PREFIX + 12 random hex digits``, readable and writable by
    its owner alone, that did not exist before (what ``tempfile.mkdtemp`` makes, without
    importing tempfile, shutil and random)."""
    for _ in range(100):
        path = Path(parent) / f"{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, f"no unused name {prefix}... in {parent}")


def staging_dir(path: Path) -> Path:
    """A fresh, uniquely named hidden directory beside ``path`` to build a store in."""
    return fresh_dir(path.parent, STAGING_PREFIX)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def install(staging: Path, path: Path, overwrite: bool, key: str = "--out") -> None:
    """Move the finished store ``staging`` to ``path``; the caller holds ``path``'s lock.

    Without ``overwrite`` a path that appeared meanwhile is never replaced (the rename of a
    non-empty directory onto an existing one fails). With ``overwrite`` an existing path is
    replaced only if :func:`check_replaceable` allows it, and the old store is removed only
    once the new one is in place. Raises CaseError; ``staging`` is left for the caller.
    """
    if not os.path.lexists(path):
        try:
            os.rename(staging, path)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise CaseError(f"cannot create {path} ({exc.strerror or exc}); choose a "
                                "writable path", key=key) from None
    if not overwrite:
        raise CaseError(f"{path} was created by someone else while this run was being set "
                        "up; choose another path or pass --overwrite", key=key)
    check_replaceable(path, key)
    try:
        if _exchange(staging, path):
            trash = staging  # now holds the old store
        else:
            trash = fresh_dir(path.parent, ".fhnpde-replaced-")
            os.replace(path, trash / "old")
            try:
                os.rename(staging, path)
            except OSError:
                os.rename(trash / "old", path)  # put the old store back
                trash.rmdir()
                raise
    except OSError as exc:
        raise CaseError(f"cannot replace {path} ({exc.strerror or exc}); the old store is "
                        "unchanged", key=key) from None
    import shutil

    shutil.rmtree(trash, ignore_errors=True)


def check_target(path: Path, overwrite: bool, key: str = "--out") -> None:
    """Everything that can be known about writing a store at ``path`` before a run starts:
    a usable name, a writable parent, and (if it exists) a store we may replace now."""
    check_name(path, key)
    # a live writer first: the store it is writing changes under a scan of its files
    holder = read_lock(path)
    if holder is not None and not (holder and lock_is_stale(holder)):
        raise _busy(path, holder, key)
    if os.path.lexists(path):
        if not overwrite:
            raise CaseError(f"{path} already exists; pass --overwrite to replace it or choose "
                            "another path", key=key)
        check_replaceable(path, key)


def check_name(path: Path, key: str = "--out") -> None:
    """CaseError unless ``path`` can name a file here: no NUL byte, no name too long, no
    regular file where a folder of it should be."""
    text = str(path)
    shown = repr(text if len(text) <= 80 else text[:77] + "...")
    if "\0" in text:
        raise CaseError(f"{shown} is not a usable path (it holds a NUL byte); choose another",
                        key=key)
    try:
        name_max = os.pathconf(_existing_parent(path), "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if any(len(os.fsencode(part)) > name_max for part in path.parts):
        raise CaseError(f"{shown} is not a usable path (a name in it is longer than the "
                        f"{name_max} bytes the file system allows); choose a shorter one",
                        key=key)
    for parent in Path(os.path.abspath(path)).parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise CaseError(f"cannot write to {path}: {parent} is a file, not a folder; "
                                "choose another path", key=key)
            break


def _existing_parent(path: Path) -> Path:
    p = Path(os.path.abspath(path)).parent
    while not os.path.exists(p) and p != p.parent:
        p = p.parent
    return p
