"""qplan's benchmark harness against Django, SQLAlchemy Core, peewee and raw sqlite3.

Run it with ``python -m benchmarks`` (or ``python benchmarks/run.py``); see ``run.py``.
"""
