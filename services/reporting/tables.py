"""Reporting read models: documented, stable table and column names for any SQL tool.

| table | one row per | what |
| --- | --- | --- |
| report_county_year (view) | programme year | the sum of the township rows |
| report_township_year | programme year, township | targets, registrations, policies by payer, insured persons, premium, subsidies, claims by kind (money in fen) |
| report_rejections | year, township, reason | registrations rejected for that reason |
| report_subsidy_lines | year, township, subsidy line | persons and fen approved |
| report_disbursements | year, plan | persons and fen paid to the insurer in one lump sum |
| report_monthly | year, township, month (1 = January of the programme year; 13 = next January) | policies, premium, claims paid |
| report_areas | area code | name, level (county/township/village), parent, aliases: the hierarchy |
| report_checkpoint | projection | the last log position applied; written with the rows |
"""

from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text, event

from services.reporting.projection import COUNTERS

metadata = MetaData()


def _money_or_count(name: str) -> Column:
    return Column(name, BigInteger if name.endswith("_fen") else Integer, nullable=False, default=0)


township_year = Table(
    "report_township_year",
    metadata,
    Column("programme_year", Integer, nullable=False),
    Column("township", String(200), nullable=False),
    *(_money_or_count(name) for name in COUNTERS),
    PrimaryKeyConstraint("programme_year", "township"),
)

rejections = Table(
    "report_rejections", metadata,
    Column("programme_year", Integer, nullable=False), Column("township", String(200), nullable=False),
    Column("reason", String(100), nullable=False), Column("registrations", Integer, nullable=False),
    PrimaryKeyConstraint("programme_year", "township", "reason"),
)

subsidy_lines = Table(
    "report_subsidy_lines", metadata,
    Column("programme_year", Integer, nullable=False), Column("township", String(200), nullable=False),
    Column("line", String(200), nullable=False), Column("persons", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("programme_year", "township", "line"),
)

disbursements = Table(
    "report_disbursements", metadata,
    Column("programme_year", Integer, nullable=False), Column("plan_id", String(200), nullable=False),
    Column("persons", Integer, nullable=False), Column("amount_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("programme_year", "plan_id"),
)

monthly = Table(
    "report_monthly", metadata,
    Column("programme_year", Integer, nullable=False), Column("township", String(200), nullable=False),
    Column("month", Integer, nullable=False), Column("policies", Integer, nullable=False),
    Column("premium_fen", BigInteger, nullable=False), Column("claims_paid_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("programme_year", "township", "month"),
)

areas = Table(
    "report_areas", metadata,
    Column("code", String(200), primary_key=True), Column("name", String(100), nullable=False),
    Column("level", String(20), nullable=False), Column("parent_code", String(200), nullable=True),
    Column("registered_position", BigInteger, nullable=False, comment="log position: the order areas are listed in"),
    Column("aliases", Text, nullable=False, default="[]", comment="a JSON list of the other names it goes by"),
)

checkpoint = Table(
    "report_checkpoint", metadata,
    Column("name", String(100), primary_key=True), Column("position", BigInteger, nullable=False),
)

# The whole county per year, for SQL tools: the sum of the township rows.
county_year_view = DDL(
    "CREATE VIEW report_county_year AS SELECT programme_year, "
    + ", ".join(f"SUM({name}) AS {name}" for name in COUNTERS)
    + " FROM report_township_year GROUP BY programme_year"
)
event.listen(township_year, "after_create", county_year_view)

READ_MODEL_TABLES = [township_year, rejections, subsidy_lines, disbursements, monthly, areas, checkpoint]
