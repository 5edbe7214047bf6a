"""Enrollment: the county association's intake. Turns household registrations into policies
(or rejections with reasons) and records the county's other inputs (targets, areas, subsidy plans)."""
