"""Deliveries: what a quality manager and a customer think in.

Pure parts (lifecycle, geo, trace) import no SQLAlchemy or httpx; ``models`` declares the
relational tables, ``store`` changes them (with the audit log) and ``source`` reads the
readings of a delivery from InfluxDB.
"""
