"""The case schema's validation (fhnpde.records): strict types, every problem collected, the
most telling one shown, dumps in key order, and no pydantic on the path of a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fhnpde.case import Case, CaseError, load_case
from fhnpde.records import (
    Either,
    Flag,
    Integer,
    Invalid,
    Key,
    ListOf,
    MapOf,
    Nested,
    Number,
    OneOf,
    Optional,
    Record,
    Tagged,
    Text,
)

ROOT = Path(__file__).resolve().parents[1]


class Inner(Record):
    kind = Key(OneOf("inner"))
    size = Key(Integer(ge=1), 1)


class Other(Record):
    kind = Key(OneOf("other"))


class Outer(Record):
    rate = Key(Number(gt=0))
    label = Key(Text(), "x")
    on = Key(Flag(), False)
    pair = Key(ListOf(Number(), min_length=2, max_length=2, shape="a list [start, end]"),
               factory=lambda: [0.0, 1.0])
    extent = Key(Either(Number(gt=0), ListOf(Number(gt=0), min_length=2, max_length=2,
                                             shape="a pair [x, y]")), 1.0)
    table = Key(MapOf(Number()), factory=dict)
    part = Key(Optional(Nested(Inner)), None, omit_default=True)
    shape = Key(Tagged({"inner": Inner, "other": Other}), factory=lambda: Other(kind="other"))

    def check(self):
        if self.rate > 10:
            raise ValueError("is too fast")


def problems(data) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as info:
        Outer.validate(data)
    return [(".".join(map(str, p.loc)), p.message) for p in info.value.problems]


@pytest.mark.parametrize(("value", "message"), [
    (True, "must be a number, got True"),  # a bool is not a number
    ("1", "must be a number, got '1'"),
    (10**400, "must be a number, got"),  # beyond a float
    (float("nan"), "must be a finite number, got nan"),
    (float("inf"), "must be a finite number, got inf"),
    (0, "must be > 0, got 0"),
    (-0.5, "must be > 0, got -0.5"),
])
def test_numbers_are_strict_and_finite(value, message):
    [(key, text)] = problems({"rate": value})
    assert key == "rate"
    assert text.startswith(message), text


def test_an_int_is_stored_as_a_float_and_defaults_are_fresh():
    a, b = Outer.validate({"rate": 3}), Outer.validate({"rate": 3})
    assert a.rate == 3.0
    assert isinstance(a.rate, float)
    a.pair.append(2.0)
    assert b.pair == [0.0, 1.0]  # a default list is not shared
    assert a.shape == Other(kind="other")
    assert a.shape is not b.shape


def test_every_problem_is_collected_with_its_key_path():
    found = dict(problems({"rate": "x", "label": 3, "on": 1, "pair": [1.0, "a"],
                           "table": {"k": None, 5: 1.0}, "typo": 1, "part": {"kind": "inner",
                                                                              "size": 0}}))
    assert found == {
        "rate": "must be a number, got 'x'",
        "label": "must be a string, got 3",
        "on": "must be true or false, got 1",
        "pair.1": "must be a number, got 'a'",
        "table.k": "must be a number, got None",
        "table.5": "a key must be a string, got 5",
        "typo": "unknown key (check its spelling against DESIGN.md §5)",
        "part.size": "must be >= 1, got 0",
    }


def test_missing_keys_and_the_record_check_runs_only_on_valid_keys():
    assert problems({}) == [("rate", "missing required key")]
    assert problems({"rate": 11.0}) == [("", "is too fast")]
    assert problems({"rate": 11.0, "on": "yes"}) == [("on", "must be true or false, got 'yes'")]


@pytest.mark.parametrize(("value", "message"), [
    ([1.0, 2.0, 3.0], "must be a pair [x, y], got [1.0, 2.0, 3.0]"),  # a list: the pair's
    ([1.0, -2.0], "must be > 0, got -2.0"),
    ("wide", "must be a number or a pair [x, y], got 'wide'"),
])
def test_either_reports_the_form_the_value_has(value, message):
    [(key, text)] = problems({"rate": 1.0, "extent": value})
    assert key.startswith("extent")
    assert text == message


@pytest.mark.parametrize(("value", "message"), [
    ({"size": 2}, "needs a 'kind' key"),
    ({"kind": "square"}, "kind must be one of 'inner', 'other', got 'square'"),
    ({"kind": ["inner"]}, "kind must be one of 'inner', 'other', got ['inner']"),
    ({"kind": "other", "size": 2}, "unknown key"),
    (5, "must be a mapping of keys, got 5"),
])
def test_tagged_picks_the_record_by_kind(value, message):
    [(key, text)] = problems({"rate": 1.0, "shape": value})
    assert key.startswith("shape"), key
    assert text.startswith(message), text


def test_one_of_matches_type_as_well_as_value():
    class Order(Record):
        order = Key(OneOf(1, 2), 2)

    assert Order.validate({"order": 1}).order == 1
    with pytest.raises(Invalid, match="must be 1 or 2, got True"):
        Order.validate({"order": True})  # True == 1 in Python, but it is not an order


def test_dump_is_in_key_order_and_leaves_out_unset_optional_keys():
    record = Outer.validate({"table": {"b": 1, "a": 2}, "rate": 2, "part": None})
    assert list(record.to_dict()) == ["rate", "label", "on", "pair", "extent", "table",
                                      "shape"]
    assert record.to_dict()["table"] == {"b": 1.0, "a": 2.0}
    assert Outer.validate(record.to_dict()) == record  # a dump validates to an equal record


def test_case_errors_name_the_file_and_key_and_choose_the_most_telling():
    # a misspelt key outranks a wrong value elsewhere; a check's own sentence outranks both
    with pytest.raises(CaseError) as info:
        load_case(ROOT / "cases" / "divergent.yaml", ["solver.metod=rk4", "time.dt=abc"])
    assert str(info.value) == (f"{ROOT / 'cases' / 'divergent.yaml'}: solver.metod: unknown "
                               "key (check its spelling against DESIGN.md §5)")
    with pytest.raises(CaseError, match=r"domain\.boundary_order: must be 1 or 2, got True"):
        load_case(ROOT / "cases" / "divergent.yaml", ["domain.boundary_order=true"])
    with pytest.raises(CaseError, match=r"initial\.v: must be a number or a mapping with kind "
                                        r"'gaussian' or 'box', got 'abc'"):
        load_case(ROOT / "cases" / "divergent.yaml", ["initial.v=abc"])


def test_every_shipped_case_round_trips_through_its_dump():
    for path in sorted((ROOT / "cases").glob("*.yaml")):
        if path.name.startswith("sweep"):
            continue
        case = load_case(path)
        assert Case.from_dict(case.to_dict()) == case, path


def test_a_run_loads_no_pydantic():
    code = ("import sys, fhnpde; fhnpde.load_case(sys.argv[1]); "
            "import fhnpde.cli; fhnpde.cli.build_parser(); print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "cases" / "divergent.yaml")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
