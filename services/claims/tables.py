"""Claims' own tables: the cover it knows of (from PolicyIssued) and what is left of it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Integer, MetaData, PrimaryKeyConstraint, String, Table

metadata = MetaData()

policies = Table(
    "claims_policies",
    metadata,
    Column("policy_number", String(200), primary_key=True),
    Column("programme_year", Integer, nullable=False),
    Column("township", String(200), nullable=False),
    Column("first_day", Date, nullable=False),
    Column("last_day", Date, nullable=False),
    Column("medical_remaining_fen", BigInteger, nullable=False),
)

persons = Table(
    "claims_persons",
    metadata,
    Column("policy_number", String(200), nullable=False),
    Column("resident_id", String(18), nullable=False),
    Column("sum_fen", BigInteger, nullable=False),
    Column("disability_paid_fen", BigInteger, nullable=False, default=0),
    Column("ended", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("policy_number", "resident_id"),
)

claims_seen = Table(
    "claims_seen",
    metadata,
    Column("claim_id", String(200), primary_key=True),
)
