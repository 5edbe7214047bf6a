"""Enrollment's own tables: who is insured in which programme year, the product terms of each year
and the registered areas (its decision state)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

metadata = MetaData()

insured_households = Table(
    "enrollment_households",
    metadata,
    Column("programme_year", Integer, nullable=False),
    Column("household_id", String(200), nullable=False),
    Column("policy_number", String(200), nullable=False),
    PrimaryKeyConstraint("programme_year", "household_id"),
    # A new policy number is looked up here before it is issued (never two policies with one number).
    Index("ix_enrollment_households_policy_number", "programme_year", "policy_number"),
)

insured_persons = Table(
    "enrollment_persons",
    metadata,
    Column("programme_year", Integer, nullable=False),
    Column("resident_id", String(18), nullable=False),
    Column("policy_number", String(200), nullable=False),
    PrimaryKeyConstraint("programme_year", "resident_id"),
)

product_terms = Table(
    "enrollment_terms",  # the latest ProductTermsPublished of each year (the log keeps every one)
    metadata,
    Column("programme_year", Integer, primary_key=True, autoincrement=False),
    Column("premium_per_unit_fen", BigInteger, nullable=False),
    Column("death_disability_per_unit_fen", BigInteger, nullable=False),
    Column("medical_limit_per_unit_fen", BigInteger, nullable=False),
    Column("deductible_fen", BigInteger, nullable=False),
    Column("payment_ratio", String(12), nullable=False, comment="a decimal, e.g. 0.8"),
)

areas = Table(
    "enrollment_areas",  # the latest AreaRegistered of each code (the log keeps every one)
    metadata,
    Column("code", String(200), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("level", String(20), nullable=False),
    Column("parent_code", String(200), nullable=True),
    Column("aliases", Text, nullable=False, default="[]", comment="a JSON list of other names"),
)
