"""Helpers for payload tests: pickles a real plan never produces."""

from __future__ import annotations

from typing import Any

from qplan.plan import _restore


class PlanLike:
    """Pickles as a call to the restore function with whatever arguments it is given."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __reduce__(self) -> tuple:
        return (_restore, self.args)
