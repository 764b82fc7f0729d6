"""The conformance suite: ``docs/contract.md`` checked through the public API of one backend.

Every backend in the kydb repository runs all of it, and so can a third
party's.  Subclass :class:`StoreConformance` in a test module, give it a
``new_url`` fixture (a factory of URLs to fresh, empty namespaces — a unique
base path, bucket, table or store name per call) and raw access to the
stored blobs, and pytest collects every test below::

    import uuid, pytest
    from kydb.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def new_url(self):
            return lambda: f"mystore://localhost/test-{uuid.uuid4().hex}"

        def raw_get(self, db, path):
            ...  # the bytes stored at absolute path ``path`` (base path included), or None

        def raw_put(self, db, path, blob):
            ...  # store ``blob`` at ``path`` behind kydb's back

What the suite expects of optional behaviour follows the capabilities the
store class declares (:class:`kydb.Capabilities`): a capability it lacks is
tested for its clear refusal, one it declares is tested for real.  One
module per area of the contract; each test class can also be used alone.

A read-only store (``writable=False``) cannot be written by the suite: it
subclasses :class:`ReadOnlyConformance` (module ``readonly``) instead, which
plants data through a writable twin and reads it back through the store.
"""

from __future__ import annotations

from .batches import BatchTests
from .cache import CacheTests
from .capabilities import CapabilityTests
from .composites import CacheDBTests, UnionTests
from .conditional import ConditionalWriteTests
from .connecting import ConnectingTests
from .dbobj import DbObjTests
from .errors import ErrorTests
from .fixtures import StoreFixtures, unique_name
from .folders import FolderTests
from .keys import KeyTests
from .queries import QueryTests
from .readonly import ReadOnlyConformance
from .trust import TrustTests
from .values import ObjectTests

__all__ = [
    "BatchTests",
    "CacheDBTests",
    "CacheTests",
    "CapabilityTests",
    "ConditionalWriteTests",
    "ConnectingTests",
    "DbObjTests",
    "ErrorTests",
    "FolderTests",
    "KeyTests",
    "ObjectTests",
    "QueryTests",
    "ReadOnlyConformance",
    "StoreConformance",
    "StoreFixtures",
    "TrustTests",
    "UnionTests",
    "unique_name",
]


class StoreConformance(
    CapabilityTests,
    ConnectingTests,
    KeyTests,
    ObjectTests,
    BatchTests,
    CacheTests,
    FolderTests,
    UnionTests,
    CacheDBTests,
    DbObjTests,
    ErrorTests,
    TrustTests,
    QueryTests,
    ConditionalWriteTests,
):
    """The whole suite.  Subclass it with ``new_url``, ``raw_get`` and ``raw_put``."""
