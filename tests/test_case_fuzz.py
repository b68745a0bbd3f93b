"""Random mutations of every shipped case, sweep and surrogate config file, thrown at their
loaders: each must end as a valid object or one :class:`~fhnpde.case.CaseError` whose
message is one line of bounded length. Any other exception fails, and so does an example
that takes longer than its deadline or hangs (an alarm interrupts it).

Mutations, one to four per example: on the parsed mapping, delete a key or list item,
replace a value by a random YAML value (huge, tiny, negative, subnormal numbers, NaN, inf,
strings long and odd, null, lists, nested mappings), rename or add a key, replace a value
by an alias bomb or by deep nesting; on the text, duplicate a line (a duplicate key),
delete or truncate lines, add anchors and aliases or open brackets; on the bytes, corrupt
a few bytes. The examples are derandomized, so a run is the same every time.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhnpde.case import Case, CaseError, load_case, yaml_load
from fhnpde.sweep import Sweep, load_sweep

ROOT = Path(__file__).resolve().parents[1]
CASE_FILES = sorted((ROOT / "cases").glob("*.yaml"))
SWEEP_FILES = [p for p in CASE_FILES if p.name.startswith("sweep")]
PLAIN_CASES = [p for p in CASE_FILES if p not in SWEEP_FILES]
CONFIG_FILES = sorted((ROOT / "surrogates" / "configs").glob("*.yaml"))
MAX_MESSAGE = 1000  # characters of one error line (the parts are capped well below)
HANG_SECONDS = 20  # an example still running after this long is a hang

FUZZ = settings(max_examples=200, derandomize=True, database=None,
                deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# --- values a user might type -----------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-5, 60),
    st.sampled_from([0, -1, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 10**99]),
    st.floats(),  # every float: NaN, +-inf, subnormals, +-1.8e308
    st.sampled_from([5e-324, 1e-310, 2.2250738585072014e-308, 1e-300, 1e-150, 1e150, 1e300,
                     1e308, -1e308, 1.7976931348623157e308, -0.0]),
)
WORDS = st.sampled_from([
    "nagumo", "fitzhugh", "explicit", "adaptive", "crank-nicolson", "split", "rk4", "euler",
    "numpy", "numba", "cupy", "thomas", "gaussian", "box", "exact", "neural", "grid",
    "latin-hypercube", "uniform", "summary", "fields", "trajectory", "one-step", "itnn",
    "ddnn", "tanh", "/dev/zero", ".", "", "divergent.yaml", "~", "yes", "0x1F", "1:30",
    "2001-12-14", "!!binary aGk=", "&a x", "*a", "<<", "{", "[", "a: b", "- x",
])
STRINGS = st.one_of(WORDS, st.text(max_size=12),
                    st.text(min_size=100, max_size=3000).map(lambda s: s or "x"))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
KEYS = st.one_of(WORDS, st.text(max_size=10), st.integers(-3, 3), st.none(), st.floats())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=8,
)


def alias_bomb(levels: int, width: int) -> list:
    """A value whose dump shares each level ``width`` times: width**levels leaves."""
    value: list = ["lol"] * width
    for _ in range(levels):
        value = [value] * width
    return value


def deep(levels: int) -> list | dict:
    value: list | dict = []
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


# --- mutations ---------------------------------------------------------------------------------


def paths(node, prefix=(), seen=None) -> list[tuple]:
    """Every key path into mappings and lists of a parsed document (the root excluded),
    entering a value shared by several paths (an alias) only once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    out = []
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else ())
    for key, child in items:
        out.append((*prefix, key))
        out.extend(paths(child, (*prefix, key), seen))
    return out


def parent_of(data, path):
    node = data
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutate_structure(draw, data):
    """One change to the parsed document (in place)."""
    candidates = paths(data)
    if not candidates:
        return
    op = draw(st.sampled_from(["delete", "replace", "replace", "rename", "add", "bomb", "deep"]))
    path = draw(st.sampled_from(candidates))
    parent, key = parent_of(data, path), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = draw(st.one_of(NUMBERS, VALUES))
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(KEYS)] = parent.pop(key)
    elif op == "add" and isinstance(parent, dict):
        parent[draw(KEYS)] = draw(VALUES)
    elif op == "add":
        parent.append(draw(VALUES))
    elif op == "bomb":
        parent[key] = alias_bomb(draw(st.integers(1, 8)), draw(st.integers(2, 12)))
    elif op == "deep":
        parent[key] = deep(draw(st.integers(1, 80)))


@st.composite
def mutate_number(draw, data):
    """Another number where the file has one: the structure stays valid and the derived
    numbers (steps, spacings, limits, sums) may overflow or underflow."""
    numeric = [p for p in paths(data) if type(parent_of(data, p)[p[-1]]) in (int, float)]
    if numeric:
        path = draw(st.sampled_from(numeric))
        parent_of(data, path)[path[-1]] = draw(NUMBERS)


@st.composite
def mutate_text(draw, text: str) -> str:
    lines = text.splitlines()
    if not lines:
        return text
    i = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["duplicate", "delete", "truncate", "anchor", "brackets",
                               "indent"]))
    if op == "duplicate":  # a key given twice (or a list item repeated)
        j = draw(st.integers(i, min(len(lines), i + 3)))
        lines[j:j] = [lines[i]]
    elif op == "delete":
        del lines[i]
    elif op == "truncate":
        lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        del lines[i + 1:]
    elif op == "anchor":  # alias an earlier value, or an undefined or recursive one
        if ": " in lines[i]:
            key, value = lines[i].split(": ", 1)
            lines[i] = f"{key}: &x {value}"
            j = draw(st.integers(0, len(lines) - 1))
            if ": " in lines[j] and j != i:
                key_j = lines[j].split(": ", 1)[0]
                lines[j] = f"{key_j}: {draw(st.sampled_from(['*x', '[*x, *x]', '*y']))}"
    elif op == "brackets":
        n = draw(st.integers(1, 400))
        lines[i] = lines[i] + " " + "[" * n + "]" * draw(st.integers(0, n))
    else:
        lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
    return "\n".join(lines) + "\n"


@st.composite
def corrupt_bytes(draw, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.sampled_from([0x00, 0xFF, 0xC3, 0x09, 0x0D, 0x22, 0x27, 0x3A, 0x2D,
                                        0x26, 0x2A, 0x21, 0x7B, 0x5B, 0x23, 0x7C, 0x3E]))
    return bytes(data)


@st.composite
def mutated(draw, files: list[Path]) -> tuple[Path, bytes]:
    """(the shipped file mutated, the bytes of its mutant)."""
    path = draw(st.sampled_from(files))
    text = path.read_text()
    # (numbers, structural, textual mutations, corrupt bytes)
    numbers, structural, textual, corrupt = draw(st.sampled_from([
        (1, 0, 0, False), (2, 0, 0, False), (4, 0, 0, False), (1, 1, 0, False),
        (0, 1, 0, False), (0, 2, 0, False), (0, 3, 0, False), (0, 1, 1, False),
        (0, 0, 1, False), (0, 0, 2, False), (0, 0, 0, True), (0, 1, 0, True),
    ]))
    if numbers or structural:
        data = yaml_load(text)
        for _ in range(numbers):
            draw(mutate_number(data))
        for _ in range(structural):
            draw(mutate_structure(data))
        # shared values are written as anchors and aliases; keys of any type kept as given
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()),
                              default_flow_style=draw(st.sampled_from([False, None, True])))
    for _ in range(textual):
        text = draw(mutate_text(text))
    raw = text.encode("utf-8")
    if corrupt:
        raw = draw(corrupt_bytes(raw))
    return path, raw


# --- the check ---------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: int):
    """Raise Hang in the test if it is still running after ``seconds`` (main thread, POSIX)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def ring(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def workdir():
    """A folder holding copies of every case file, so a sweep's relative ``base`` resolves."""
    folder = Path(tempfile.mkdtemp(prefix="fhnpde-fuzz-"))
    for p in CASE_FILES:
        shutil.copy(p, folder / p.name)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def check_outcome(load, expected_type, folder: Path, example: tuple[Path, bytes]) -> None:
    original, raw = example
    target = folder / f"mutant_{original.name}"
    target.write_bytes(raw)
    try:
        with alarm(HANG_SECONDS):
            result = load(target)
    except CaseError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert "\r" not in message, message
        assert len(message) <= MAX_MESSAGE, message
        assert message.startswith(str(target)), message
    else:
        assert isinstance(result, expected_type)


@FUZZ
@given(example=mutated(PLAIN_CASES))
def test_mutated_case_files(workdir, example):
    check_outcome(load_case, Case, workdir, example)


@FUZZ
@given(example=mutated(SWEEP_FILES))
def test_mutated_sweep_files(workdir, example):
    check_outcome(load_sweep, Sweep, workdir, example)


@FUZZ
@given(example=mutated(CONFIG_FILES))
def test_mutated_surrogate_configs(workdir, example):
    from surrogates.config import Config, load_config

    check_outcome(load_config, Config, workdir, example)


def test_the_shipped_files_load_unmutated():
    """The baseline the mutations start from: every shipped file is valid as it is."""
    for p in PLAIN_CASES:
        assert isinstance(load_case(p), Case)
    for p in SWEEP_FILES:
        assert isinstance(load_sweep(p), Sweep)
    from surrogates.config import Config, load_config

    for p in CONFIG_FILES:
        assert isinstance(load_config(p), Config)
