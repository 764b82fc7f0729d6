"""Tools for testing kydb backends: the conformance suite and test middleware.

Install with ``pip install kydb-core[testing]``.  This package is never
loaded as a pytest plugin automatically; import what you need::

    from kydb.testing import StoreConformance, unique_name

See ``docs/backends.md`` for a backend author's walk through it.
"""

from __future__ import annotations

from .conformance import ReadOnlyConformance, StoreConformance, unique_name
from .plugins import CallCounter, FailOn, count_calls, failing

__all__ = ["CallCounter", "FailOn", "ReadOnlyConformance", "StoreConformance", "count_calls", "failing", "unique_name"]
