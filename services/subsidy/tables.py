"""Subsidy's own tables: its plans, what each line has used, who is subsidised, what waits."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

metadata = MetaData()

plans = Table(
    "subsidy_plans",
    metadata,
    Column("plan_id", String(200), primary_key=True),
    Column("programme_year", Integer, nullable=False, unique=True),
    Column("plan", Text, nullable=False, comment="the SubsidyPlanPublished payload as JSON"),
    Column("closed", Boolean, nullable=False, default=False),
)

line_usage = Table(
    "subsidy_line_usage",
    metadata,
    Column("plan_id", String(200), nullable=False),
    Column("line", String(200), nullable=False),
    Column("persons", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("plan_id", "line"),
)

subsidised = Table(
    "subsidy_persons",
    metadata,
    Column("programme_year", Integer, nullable=False),
    Column("resident_id", String(18), nullable=False),
    Column("plan_id", String(200), nullable=False),
    PrimaryKeyConstraint("programme_year", "resident_id"),
)

deferred = Table(
    "subsidy_deferred",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("programme_year", Integer, nullable=False, index=True),
    Column("policy", Text, nullable=False, comment="the PolicyIssued payload as JSON"),
    Column("decided", Boolean, nullable=False, default=False),
)
