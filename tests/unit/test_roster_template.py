"""The roster template county staff fill in, and what they read when a row is wrong: an empty data
sheet with dropdowns, an example sheet, a 说明 sheet of allowed values; problems in Chinese naming
the line and the column."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from guanhuai.rosters import COLUMNS, TEMPLATE_ROWS, read_events, read_roster, write_template


@pytest.fixture
def template(tmp_path: Path) -> openpyxl.Workbook:
    path = tmp_path / "roster.xlsx"
    write_template(path, ["城关", "雪峰"])
    return openpyxl.load_workbook(path)


def test_the_data_sheet_is_first_and_holds_the_headings_only(template: openpyxl.Workbook) -> None:
    data = template.worksheets[0]
    assert [c.value for c in data[1]] == list(COLUMNS)
    assert data.max_row == 1


def test_an_example_sheet_holds_a_filled_in_household_and_reads_as_one(template: openpyxl.Workbook, tmp_path: Path) -> None:
    example = template["示例"]
    assert [[c.value for c in row] for row in example.iter_rows(min_row=2)] == TEMPLATE_ROWS
    rows = [(n, dict(zip(COLUMNS, values, strict=True))) for n, values in enumerate(TEMPLATE_ROWS, start=2)]
    parsed = read_roster(iter(rows), "county-test")
    assert parsed.problems == [] and len(parsed.events) == 1


def test_the_notes_sheet_lists_the_allowed_categories_payers_relations_and_the_date_format(template: openpyxl.Workbook) -> None:
    notes = {row[0].value: row[1].value for row in template["说明"].iter_rows(min_row=2)}
    assert "二女结扎户" in notes["类别"] and "其他计生家庭" in notes["类别"]
    assert "政府" in notes["缴费方（投保方式）"] and "个人" in notes["缴费方（投保方式）"]
    assert "户主" in notes["与户主关系"] and "2024-03-01" in notes["缴费日期、出生日期"]
    assert notes["乡镇"] == "城关、雪峰"


def test_the_data_sheet_has_dropdowns_for_category_payer_relation_and_the_registered_townships(template: openpyxl.Workbook) -> None:
    rules = {str(dv.sqref).split(":")[0]: dv for dv in template.worksheets[0].data_validations.dataValidation}
    column = {heading: openpyxl.utils.get_column_letter(i) for i, heading in enumerate(COLUMNS, start=1)}
    assert all(dv.type == "list" for dv in rules.values())
    assert "二女结扎户" in rules[f"{column['类别']}2"].formula1
    assert rules[f"{column['缴费方']}2"].formula1 == '"政府,单位,个人"'
    assert rules[f"{column['与户主关系']}2"].formula1 == '"户主,配偶,子女"'
    assert rules[f"{column['乡镇']}2"].formula1 == '"城关,雪峰"'


def test_without_registered_townships_there_is_no_township_dropdown(tmp_path: Path) -> None:
    write_template(tmp_path / "roster.xlsx")
    rules = openpyxl.load_workbook(tmp_path / "roster.xlsx").worksheets[0].data_validations.dataValidation
    assert len(rules) == 3


def test_a_csv_template_is_the_headings_alone_with_a_bom(tmp_path: Path) -> None:
    write_template(tmp_path / "roster.csv")
    assert (tmp_path / "roster.csv").read_bytes() == ("\ufeff" + ",".join(COLUMNS) + "\r\n").encode()


def test_a_template_with_another_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xlsx"):
        write_template(tmp_path / "roster.txt")
    assert not (tmp_path / "roster.txt").exists()


def roster(tmp_path: Path, **changes: str) -> str:
    """The example household as a CSV roster, its second member's cells changed; its problems."""
    rows = [dict(zip(COLUMNS, values, strict=True)) for values in TEMPLATE_ROWS]
    rows[1].update(changes)
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(",".join(r.values()) for r in [dict(zip(COLUMNS, COLUMNS, strict=True)), *rows]),
                    encoding="utf-8-sig")
    return "；".join(p.reason for p in read_events(path, "county-test").problems)


def test_a_bad_date_is_named_by_line_and_column_in_chinese(tmp_path: Path) -> None:
    assert roster(tmp_path, 出生日期="2024-13-01") == "第 3 行 出生日期：不是有效日期（2024-13-01）"


def test_an_empty_name_says_so_in_chinese_not_in_pydantics_english(tmp_path: Path) -> None:
    assert roster(tmp_path, 姓名="") == "第 3 行 姓名：不能为空"
    too_long = roster(tmp_path, 姓名="王" * 61)
    assert too_long.startswith("第 3 行 姓名：太长") and "String should" not in too_long


def test_a_malformed_id_number_is_named_in_chinese(tmp_path: Path) -> None:
    assert roster(tmp_path, 身份证号="12345") == "第 3 行 身份证号：须为 18 位身份证号（17 位数字加一位数字或 X）（12345）"


def test_an_unknown_payer_lists_the_allowed_values(tmp_path: Path) -> None:
    rows = [dict(zip(COLUMNS, values, strict=True)) for values in TEMPLATE_ROWS]
    rows[0]["缴费方"] = "保险公司"
    parsed = read_roster(iter(enumerate(rows, start=2)), "county-test")
    assert parsed.problems[0].reason == "第 2 行 缴费方：须为政府、单位、个人之一（保险公司）"
    assert parsed.problems[0].lines == (2, 3)
