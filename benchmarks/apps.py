"""Django app config for the benchmark's Django model (label ``bench``), used only by run.py.

Django pickles a query's fields through its app registry, so the model's app must be
installed for ``pickle.dumps(qs.query)`` to work.
"""

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "benchmarks"
    label = "bench"
    default_auto_field = "django.db.models.AutoField"
