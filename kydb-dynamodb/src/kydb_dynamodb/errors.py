"""The errors kydb-dynamodb raises besides kydb's own.

Each names the table and the store's URL (secrets masked), and the key where
there is one.  None of them is a ``KeyError``: only a key that is genuinely
absent reads as missing.  Network failures and throttling that survive
botocore's retries are plain :class:`kydb.StoreUnavailable`.
"""

from __future__ import annotations

import kydb

__all__ = ["AccessDenied", "DynamoDBRequestError", "TableLayoutMismatch", "TableNotFound"]


class AccessDenied(kydb.KydbError, PermissionError):
    """DynamoDB refused the request: no credentials, bad or expired ones, or a policy that denies it."""


class TableLayoutMismatch(kydb.KydbError, ValueError):
    """The URL's table exists but was not made for kydb: its key schema or indexes differ from kydb's layout."""


class DynamoDBRequestError(kydb.KydbError):
    """DynamoDB rejected a request for another reason (its error code and message are in the message)."""


class TableNotFound(kydb.StoreUnavailable):
    """The URL's table does not exist (reads see an empty store; the first write creates it)."""
