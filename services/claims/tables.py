"""Claims' own tables: the cover it knows of (from PolicyIssued), what is left of it, and the
claims that wait for their policy."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

from shared.events.tables import UtcDateTime

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
    # The policy's medical terms (PolicyIssued); null on policies that carry none (see ClaimReported).
    Column("deductible_fen", BigInteger, nullable=True),
    Column("payment_ratio", String(12), nullable=True, comment="a decimal, e.g. 0.8"),
)

persons = Table(
    "claims_persons",
    metadata,
    Column("policy_number", String(200), nullable=False),
    Column("resident_id", String(18), nullable=False),
    Column("sum_fen", BigInteger, nullable=False),
    Column("disability_paid_fen", BigInteger, nullable=False, default=0),
    Column("ended", Boolean, nullable=False, default=False),
    Column("ended_on", Date, nullable=True, comment="the date of death, when the cover ended by death"),
    PrimaryKeyConstraint("policy_number", "resident_id"),
)

claims_seen = Table(
    "claims_seen",
    metadata,
    Column("claim_id", String(200), primary_key=True),
)

deferred = Table(
    "claims_deferred",  # a row leaves when its claim is decided (the log keeps the history)
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("claim_id", String(200), nullable=False, unique=True),
    Column("policy_number", String(200), nullable=False, index=True),
    Column("claim", Text, nullable=False, comment="the ClaimReported payload as JSON"),
    Column("occurred_at", UtcDateTime, nullable=False, comment="of the claim"),
    Column("recorded_at", UtcDateTime, nullable=False, index=True, comment="of the claim: its 30 days of log time start here"),
    Column("deferral_id", String(36), nullable=False, comment="the ClaimDeferred event: the cause of the claim's decision"),
    Column("correlation_id", String(36), nullable=False),
)
