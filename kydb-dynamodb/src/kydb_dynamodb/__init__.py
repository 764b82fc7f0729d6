"""kydb's DynamoDB backend: ``dynamodb://TABLE[/base/path][?endpoint_url=...&region=...&profile=...]``.

See :mod:`kydb_dynamodb.layout` for the table's layout and
:mod:`kydb_dynamodb.store` for how each operation uses it and what it costs.
This package imports boto3; kydb imports it only when a ``dynamodb://`` URL
is connected.
"""

from __future__ import annotations

from .connection import CLIENTS, POOL_SIZE, POOL_TIMEOUT
from .errors import AccessDenied, DynamoDBRequestError, TableLayoutMismatch, TableNotFound
from .layout import INLINE_LIMIT, PART_SIZE
from .store import ORPHAN_GRACE_S, DynamoDBStore

__all__ = [
    "CLIENTS",
    "INLINE_LIMIT",
    "ORPHAN_GRACE_S",
    "PART_SIZE",
    "POOL_SIZE",
    "POOL_TIMEOUT",
    "AccessDenied",
    "DynamoDBRequestError",
    "DynamoDBStore",
    "TableLayoutMismatch",
    "TableNotFound",
]
__version__ = "0.1.0"
