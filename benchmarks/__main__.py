"""``python -m benchmarks``: run the harness (options: ``python -m benchmarks --help``)."""

from .run import main

raise SystemExit(main())
