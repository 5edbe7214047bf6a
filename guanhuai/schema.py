"""Every table of guanhuai in one place: the log, the inbox, each service's own, the read models.
Alembic migrations and ``create_all`` both start from here. It lives in the composition package
(``guanhuai``), which may know every service; ``shared`` knows none of them."""

from __future__ import annotations

from sqlalchemy import MetaData


def all_metadata() -> list[MetaData]:
    from guanhuai.ops import retries_metadata
    from services.claims.tables import metadata as claims
    from services.enrollment.tables import metadata as enrollment
    from services.reporting.tables import metadata as reporting
    from services.subsidy.tables import metadata as subsidy

    from shared.events.inbox import metadata as inbox
    from shared.events.relay import metadata as relay
    from shared.events.tables import metadata as log

    return [log, inbox, relay, enrollment, subsidy, claims, reporting, retries_metadata]
