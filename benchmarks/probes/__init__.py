"""Probes: one-off questions (which calibration, which layers int8 keeps, the API contract)."""
