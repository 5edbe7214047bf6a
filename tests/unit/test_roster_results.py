"""A roster's result file: each row's answer beside the roster's own columns, safe to open."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from openpyxl import load_workbook

from guanhuai.outcomes import Outcome
from guanhuai.rosters import RESULT_COLUMNS, MemberRow, Parsed, Sheet, read_sheet, result_path, row_results, write_result
from tests.support.probes import probe

HEADER = ["户编号", "姓名", "身份证号"]
HOUSEHOLD = uuid.uuid4()
HEAD, CHILD = "350421197504120313", "35042120100601052X"


def parsed_household(child_name: str = "张小明") -> Parsed:
    rows = [MemberRow(2, "王建国", HEAD), MemberRow(3, child_name, CHILD)]
    return Parsed([], [], {HOUSEHOLD: rows})


def insured_without_child() -> dict[uuid.UUID, Outcome]:
    return {HOUSEHOLD: Outcome("P2024-chengguan-CG-1", (HEAD,), ((CHILD, "id_bad_check_character"),), ())}


def test_a_member_left_out_of_an_insured_household_is_named_with_the_reason_in_chinese() -> None:
    results = row_results(parsed_household(), insured_without_child())
    assert results[2] == ["已参保", "P2024-chengguan-CG-1", 1, "张小明：身份证号校验位错误", ""]
    assert results[3][0] == "未参保"


def test_a_household_without_an_answer_is_marked_unanswered() -> None:
    assert {r[0] for r in row_results(parsed_household(), {}).values()} == {"未答复"}


def test_publishing_a_result_file_again_replaces_its_result_columns(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(",".join(HEADER) + f"\nCG-1,王建国,{HEAD}\nCG-1,张小明,{CHILD}\n", encoding="utf-8-sig")
    first = write_result(roster, read_sheet(roster), row_results(parsed_household(), {}))
    second = write_result(first, read_sheet(first), row_results(parsed_household(), insured_without_child()))
    assert first == second == tmp_path / "roster.结果.csv" == result_path(first)
    header, *rows = list(csv.reader(second.read_text(encoding="utf-8-sig").splitlines()))
    assert header == HEADER + RESULT_COLUMNS
    assert [r[3] for r in rows] == ["已参保", "未参保"]


def test_names_in_a_result_file_are_never_read_as_formulas(tmp_path: Path) -> None:
    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)"]
    neutralised = 0
    for number, name in enumerate(hostile):
        for suffix in (".csv", ".xlsx"):
            roster = tmp_path / f"r{number}{suffix}"
            sheet = Sheet(HEADER, [(2, ["CG-1", "王建国", HEAD]), (3, ["CG-1", name, CHILD])])
            written = write_result(roster, sheet, row_results(parsed_household(name), insured_without_child()))
            if suffix == ".csv":
                left_out = list(csv.reader(written.read_text(encoding="utf-8-sig").splitlines()))[1][6]
                neutralised += left_out.startswith("'")
            else:
                cells = load_workbook(written).worksheets[0]
                neutralised += all(cells.cell(row=3, column=c).data_type == "s" for c in (2, 7))  # the name, left out
    probe("roster_result_formula_injection", sent=2 * len(hostile), neutralised=neutralised,
          raw=2 * len(hostile) - neutralised)
    assert neutralised == 2 * len(hostile)
