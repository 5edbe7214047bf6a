"""Subsidy: the district's per-person premium subsidies, within each plan line's caps and budget,
and the lump-sum disbursement to the insurer when a plan closes."""
