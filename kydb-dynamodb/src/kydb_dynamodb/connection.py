"""Talking to DynamoDB: the URL's settings, one boto3 client per configuration per process, and its errors.

:class:`Table` is one store's view of its table: every request goes through
it, so that it holds one of the shared client's connection slots while it
runs, batches are split to DynamoDB's limits with what DynamoDB leaves
unprocessed retried, and every failure that survives botocore's retries
becomes a kydb error naming the table and the URL (secrets masked).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import kydb
from kydb.pools import SharedPools
from kydb.url import StoreURL, positive_int_option, positive_seconds_option

from .errors import AccessDenied, DynamoDBRequestError, TableLayoutMismatch, TableNotFound
from .layout import BATCH_GET, BATCH_WRITE, PARTITION, SORT, Item, Key, layout_problems, table_definition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import QueryOutputTypeDef

__all__ = ["CLIENTS", "POOL_SIZE", "POOL_TIMEOUT", "Settings", "Table", "parse_settings"]

#: Connections per client (botocore's ``max_pool_connections``), and so requests one client runs at once.
POOL_SIZE = 16
#: Seconds a request waits for one of them before :class:`kydb.StoreUnavailable` says the pool is exhausted.
POOL_TIMEOUT = 30.0
#: botocore's own timeouts, in seconds.
CONNECT_TIMEOUT = READ_TIMEOUT = 60.0
#: botocore's attempts per DynamoDB request in its standard retry mode, unless AWS_MAX_ATTEMPTS says otherwise.
DEFAULT_ATTEMPTS = 4
#: Rounds a batch may come back with nothing processed (throttled), backing off, before kydb gives up.
UNPROCESSED_ROUNDS = 8
#: Tries of a transaction that other transactions keep cancelling (TransactionConflict), backing off.
TRANSACTION_TRIES = 8
#: Seconds to wait for a table being created (by this process or another) to become active.
TABLE_WAIT = 300.0

_OPTIONS = ("endpoint_url", "region", "profile", "pool_size", "pool_timeout", "connect_timeout", "read_timeout")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_ACCESS_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "TransactionConflictException",
        "LimitExceededException",
        "ResourceInUseException",
    }
)
# What a transaction may be cancelled for that a later try can overcome.
_TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
_CREDENTIAL_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
_NETWORK_ERRORS = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ChecksumError,
)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Settings:
    """What a ``dynamodb://`` URL says (see :func:`parse_settings`)."""

    table: str
    endpoint_url: str | None
    region: str | None
    profile: str | None
    pool_size: int
    pool_timeout: float
    connect_timeout: float
    read_timeout: float


def parse_settings(url: StoreURL) -> Settings:
    """The table and options of ``dynamodb://TABLE[/base][?...]``; ``ValueError`` naming what is wrong."""
    problem = None
    unknown = sorted(set(url.options) - set(_OPTIONS))
    if url.username is not None or url.password is not None:
        problem = (
            "credentials do not go in dynamodb URLs; they come from boto3's chain "
            "(AWS_PROFILE or ?profile=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles)"
        )
    elif not url.netloc:
        problem = "name a table: dynamodb://TABLE[/base/path]"
    elif url.port is not None or ":" in url.netloc:
        problem = "dynamodb URLs take no port; give the endpoint with ?endpoint_url=http://host:port"
    elif not _TABLE_NAME.match(url.netloc):
        problem = f"{url.netloc!r} is not a valid table name (3 to 255 letters, digits, '_', '-' and '.')"
    elif unknown:
        problem = f"unknown query option(s) {unknown}; dynamodb URLs take {list(_OPTIONS)} and base"
    elif any(not value for value in url.options.values()):
        problem = "empty query option value"
    elif "endpoint_url" in url.options:
        endpoint = urlsplit(url.options["endpoint_url"])
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            problem = "endpoint_url must be an http:// or https:// URL, e.g. ?endpoint_url=http://127.0.0.1:8000"
        elif "@" in endpoint.netloc:
            problem = "endpoint_url must not hold credentials; they come from boto3's chain"
    if problem:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {problem}")
    return Settings(
        table=url.netloc,
        endpoint_url=url.options.get("endpoint_url"),
        region=url.options.get("region"),
        profile=url.options.get("profile"),
        pool_size=positive_int_option(url, "pool_size", POOL_SIZE) or POOL_SIZE,
        pool_timeout=positive_seconds_option(url, "pool_timeout", POOL_TIMEOUT) or POOL_TIMEOUT,
        connect_timeout=positive_seconds_option(url, "connect_timeout", CONNECT_TIMEOUT) or CONNECT_TIMEOUT,
        read_timeout=positive_seconds_option(url, "read_timeout", READ_TIMEOUT) or READ_TIMEOUT,
    )


class Connection:
    """One boto3 client and the slots that bound how many requests use it at once.

    botocore opens a connection beyond ``max_pool_connections`` rather than
    wait for one, so the slots are what keeps a process to ``pool_size``
    connections per client.
    """

    def __init__(self, client: DynamoDBClient, settings: Settings, endpoint: str) -> None:
        self.client = client
        self.pool_size = settings.pool_size
        self.pool_timeout = settings.pool_timeout
        #: Where requests go, for messages.
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        retries: Mapping[str, Any] = getattr(client.meta.config, "retries", None) or {}
        #: Attempts botocore makes per request before an error reaches kydb.
        self.max_attempts = int(retries.get("total_max_attempts") or DEFAULT_ATTEMPTS)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the client's ``pool_size`` slots while the block runs; wait at most ``pool_timeout``."""
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise kydb.StoreUnavailable(
                f"the DynamoDB connection pool for {self.endpoint} is exhausted: all {self.pool_size} connections "
                f"stayed busy for {self.pool_timeout:g} s; raise ?pool_size= (now {self.pool_size}) or "
                "?pool_timeout=, or run fewer requests at once"
            )
        try:
            yield
        finally:
            self._slots.release()


#: The process's clients: one per endpoint, region, profile, credentials and client settings.
CLIENTS: SharedPools[Connection] = SharedPools(lambda connection: connection.client.close())

# One boto3 session per (profile, region): making one loads botocore's models (~75 ms), a client from a
# loaded one takes a few. Sessions are not thread-safe, so clients are made under the lock.
_sessions: dict[tuple[str | None, str | None], boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def _forget_sessions_in_child() -> None:
    global _sessions_lock
    _sessions_lock = threading.Lock()  # another thread of the parent may have held it at fork time
    _sessions.clear()


os.register_at_fork(after_in_child=_forget_sessions_in_child)


def _check_answer(http_response: Any, **_: Any) -> None:
    """Refuse an answer damaged on its way: shorter than its ``Content-Length``, or not matching its CRC32.

    botocore retries such an answer while it has attempts left, but hands
    the last one over as if it were whole, parsed from the part that
    arrived: a read cut short would look like a missing item.  Registered
    on every client (``after-call``), so that answer raises instead.
    """
    if http_response is None:
        return
    body = http_response.content
    length = str(http_response.headers.get("content-length", ""))
    if length.isdigit() and int(length) != len(body):
        raise botocore.exceptions.IncompleteReadError(actual_bytes=len(body), expected_bytes=int(length))
    expected = str(http_response.headers.get("x-amz-crc32", ""))
    actual = zlib.crc32(body) & 0xFFFFFFFF
    if expected.isdigit() and actual != int(expected):
        raise botocore.exceptions.ChecksumError(
            checksum_type="CRC32", expected_checksum=expected, actual_checksum=str(actual)
        )


def _session(settings: Settings) -> boto3.session.Session:
    key = (settings.profile, settings.region)
    session = _sessions.get(key)
    if session is None:
        session = _sessions[key] = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    return session


def acquire_connection(settings: Settings, url: StoreURL) -> tuple[Hashable, Connection]:
    """The shared client for ``settings`` (made on first use) and the key to release it with.

    The key is what decides where and as whom requests go, and how: the
    endpoint (the URL's, else ``AWS_ENDPOINT_URL_DYNAMODB``/``AWS_ENDPOINT_URL``),
    the region, the profile, the credentials' access key, the pool size,
    the timeouts and the retry settings — never the table or base path.
    """
    try:
        with _sessions_lock:
            session = _session(settings)
            credentials = session.get_credentials()
            region = session.region_name
    except botocore.exceptions.ProfileNotFound as exc:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
    environment = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    endpoint = settings.endpoint_url or environment
    key = (
        endpoint,
        region,
        settings.profile,
        None if credentials is None else credentials.access_key,
        settings.pool_size,
        settings.pool_timeout,
        settings.connect_timeout,
        settings.read_timeout,
        os.environ.get("AWS_MAX_ATTEMPTS"),
        os.environ.get("AWS_RETRY_MODE"),
    )

    def create() -> Connection:
        config = Config(
            retries={"mode": "standard"},
            max_pool_connections=settings.pool_size,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )
        try:
            with _sessions_lock:
                client = _session(settings).client("dynamodb", endpoint_url=settings.endpoint_url, config=config)
        except botocore.exceptions.NoRegionError:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: no AWS region: add ?region= to the URL, or set AWS_REGION"
            ) from None
        except ValueError as exc:  # botocore's "Invalid endpoint: ..."
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
        client.meta.events.register("after-call.dynamodb", _check_answer)
        return Connection(client, settings, client.meta.endpoint_url)

    return key, CLIENTS.acquire(key, create)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _key_text(key: Key) -> str:
    """A key as kydb's path for messages (auxiliary items show their raw sort key)."""
    partition, sort = key[PARTITION].get("S", ""), key[SORT].get("S", "")
    return repr(partition + sort)


def _backoff(attempt: int, cap: float = 2.0) -> None:
    """Sleep before another try: full jitter, from 50 ms doubling up to ``cap`` seconds."""
    time.sleep(random.uniform(0, min(cap, 0.05 * 2**attempt)))


class Table:
    """One store's table: requests, batches and transactions on it, each holding a connection slot.

    ``run_each`` runs independent requests concurrently on the store's own
    threads (``pool_size`` of them, started on first use).
    """

    def __init__(self, name: str, url: StoreURL, connection: Connection) -> None:
        self.name = name
        self.url = url
        self.connection = connection
        self.client = connection.client
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._checked = False

    def close(self) -> None:
        """Stop the store's threads (the shared client is released by the store)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ errors

    def where(self, key: str | None = None) -> str:
        """``table 'T', key '/a/b' (dynamodb://T/...)``: for messages."""
        found = f"table {self.name!r}"
        if key is not None:
            found += f", key {key}"
        return f"{found} ({self.url.masked})"

    def failure(self, exc: ClientError | BotoCoreError, operation: str, key: str | None = None) -> Exception:
        """The kydb error for a boto3 failure that survived botocore's retries."""
        where = self.where(key)
        attempts = self.connection.max_attempts
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return AccessDenied(
                f"no usable AWS credentials for {operation} on {where}: {exc}; set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or add ?profile= to the URL"
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return kydb.StoreUnavailable(
                f"DynamoDB is unreachable: {operation} on {where} failed after up to {attempts} attempt(s): {exc}; "
                f"check the endpoint ({self.connection.endpoint}) and that this host can reach it"
            )
        if not isinstance(exc, ClientError):
            return DynamoDBRequestError(f"{operation} on {where} failed: {exc}")
        return self._rejection(exc, operation, where)

    def _rejection(self, exc: ClientError, operation: str, where: str) -> Exception:
        """The kydb error for an error answer from DynamoDB."""
        code, status = _code(exc), _status(exc)
        message = exc.response.get("Error", {}).get("Message") or "no message"
        tried = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
        if code == "ResourceNotFoundException":
            return TableNotFound(f"DynamoDB table {self.name!r} does not exist ({self.url.masked}): {message}")
        if status == 403 or code in _ACCESS_CODES:
            return AccessDenied(
                f"DynamoDB denied {operation} on {where}: {code or status} ({message}); "
                "check the credentials in use and their IAM policy"
            )
        if status >= 500 or status == 429 or code in _UNAVAILABLE_CODES:
            return kydb.StoreUnavailable(
                f"DynamoDB is unavailable: {operation} on {where} failed with {code or status} after {tried} "
                f"attempt(s): {message}; try again later, or raise the table's capacity if it is throttled"
            )
        return DynamoDBRequestError(f"DynamoDB rejected {operation} on {where}: {code} (HTTP {status}): {message}")

    @contextmanager
    def request(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Hold a connection slot and translate boto3 failures inside the block (see :meth:`failure`)."""
        with self.connection.slot():
            try:
                yield
            except (ClientError, BotoCoreError) as exc:
                raise self.failure(exc, operation, key) from exc

    # ------------------------------------------------------------------ running several requests

    def run_each(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``work`` applied to every item, concurrently when there are several; results in order.

        On the first failure the items not yet started are cancelled, those
        under way are waited for, and the failure is raised.  ``work`` must
        not itself call ``run_each`` (the threads would wait on each other).
        """
        if len(items) <= 1:
            return [work(item) for item in items]
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.connection.pool_size, thread_name_prefix=f"kydb-dynamodb-{self.name}"
                )
            executor = self._executor
        futures = [executor.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            wait(futures)
            failed.result()  # raises
        return [future.result() for future in futures]

    # ------------------------------------------------------------------ the table itself

    def exists(self) -> bool:
        """Whether the table exists; the first time it does, check that it has kydb's layout.

        One ``DescribeTable`` per store until the table is found (then none):
        :class:`~kydb_dynamodb.TableLayoutMismatch` for a table made for
        something else.
        """
        if self._checked:
            return True
        with self.request("DescribeTable"):
            try:
                description = self.client.describe_table(TableName=self.name)["Table"]
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return False
                raise
        problems = layout_problems(description)
        if problems:
            raise TableLayoutMismatch(
                f"DynamoDB table {self.name!r} ({self.url.masked}) does not have kydb's layout: "
                + "; ".join(problems)
                + ". It was made for something else (the original kydb's tables have a hash key 'path' "
                "and no sort key): name another table in the URL and kydb creates it on the first write"
            )
        if description.get("TableStatus") == "CREATING":
            self._wait_until_active()
        self._checked = True
        return True

    def create(self) -> None:
        """Create the table with kydb's layout (on-demand billing), or wait for another writer creating it."""
        with self.request("CreateTable"):
            try:
                self.client.create_table(**table_definition(self.name))
            except ClientError as exc:
                if _code(exc) != "ResourceInUseException":  # created meanwhile by another writer
                    raise
        self._wait_until_active()
        self.exists()  # check what another writer may have created meanwhile

    def _wait_until_active(self) -> None:
        deadline = time.monotonic() + TABLE_WAIT
        while True:
            with self.request("DescribeTable"):
                status = self.client.describe_table(TableName=self.name)["Table"].get("TableStatus")
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise kydb.StoreUnavailable(
                    f"DynamoDB table {self.name!r} ({self.url.masked}) is still {status} after {TABLE_WAIT:g} s"
                )
            time.sleep(1.0)

    # ------------------------------------------------------------------ single requests

    def get_item(self, key: Key, what: str, projection: str | None = None) -> Item | None:
        """The item at ``key`` (strongly consistent; only ``projection``'s attributes), or ``None``."""
        params: dict[str, Any] = {"TableName": self.name, "Key": key, "ConsistentRead": True}
        if projection:
            params["ProjectionExpression"] = projection
        with self.request("GetItem", what):
            found = self.client.get_item(**params).get("Item")
        return None if found is None else dict(found)

    def query(self, what: str, **params: Any) -> QueryOutputTypeDef:
        """One ``Query`` page."""
        with self.request("Query", what):
            return self.client.query(TableName=self.name, **params)

    def query_all(self, what: str, **params: Any) -> Iterator[Item]:
        """Every item a ``Query`` finds, page after page."""
        while True:
            page = self.query(what, **params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def update_if(self, key: Key, what: str, update: str, condition: str, **expression: Any) -> bool:
        """One ``UpdateItem`` of the item at ``key``, made only if ``condition`` holds; whether it was made.

        ``expression`` holds ``ExpressionAttributeNames`` and
        ``ExpressionAttributeValues``.
        """
        with self.request("UpdateItem", what):
            try:
                self.client.update_item(
                    TableName=self.name, Key=key, UpdateExpression=update, ConditionExpression=condition, **expression
                )
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def put_item(self, item: Item, what: str) -> None:
        with self.request("PutItem", what):
            self.client.put_item(TableName=self.name, Item=item)

    def delete_item(self, key: Key, what: str) -> None:
        with self.request("DeleteItem", what):
            self.client.delete_item(TableName=self.name, Key=key)

    # ------------------------------------------------------------------ batches

    def batch_get(self, keys: Sequence[Key], per_request: int = BATCH_GET, projection: str | None = None) -> list[Item]:
        """The items at ``keys`` that exist (strongly consistent), ``per_request`` keys per ``BatchGetItem``.

        The requests run concurrently; keys DynamoDB leaves unprocessed
        (a response holds at most 16 MB, and throttling) are asked for again,
        at once while some progress is made, else after a backoff, for at most
        :data:`UNPROCESSED_ROUNDS` rounds.
        """
        chunks = [list(keys[start : start + per_request]) for start in range(0, len(keys), per_request)]
        found: list[Item] = []
        for items in self.run_each(lambda chunk: self._batch_get_chunk(chunk, projection), chunks):
            found += items
        return found

    def _batch_get_chunk(self, keys: list[Key], projection: str | None) -> list[Item]:
        found: list[Item] = []
        pending: list[Key] = keys
        stalled = 0
        while pending:
            request: dict[str, Any] = {"Keys": pending, "ConsistentRead": True}
            if projection:
                request["ProjectionExpression"] = projection
            asked: dict[str, Any] = {self.name: request}
            with self.request("BatchGetItem", _key_text(pending[0]) if len(pending) == 1 else None):
                response = self.client.batch_get_item(RequestItems=asked)
            got = [dict(item) for item in response.get("Responses", {}).get(self.name, [])]
            found += got
            unprocessed: Any = response.get("UnprocessedKeys") or {}
            pending = list(unprocessed.get(self.name, {}).get("Keys", []))
            stalled = 0 if got else stalled + 1
            if pending and stalled:
                self._unprocessed(stalled, "BatchGetItem", len(pending))
        return found

    def batch_write(self, requests: Sequence[Mapping[str, Any]]) -> None:
        """Put and delete items, :data:`BATCH_WRITE` per ``BatchWriteItem``, the requests concurrently.

        ``requests`` are ``{"PutRequest": {"Item": ...}}`` or
        ``{"DeleteRequest": {"Key": ...}}``, no two for one key.  Items left
        unprocessed are sent again as :meth:`batch_get` does.
        """
        chunks = [list(requests[start : start + BATCH_WRITE]) for start in range(0, len(requests), BATCH_WRITE)]
        self.run_each(self._batch_write_chunk, chunks)

    def _batch_write_chunk(self, requests: list[Mapping[str, Any]]) -> None:
        pending: list[Any] = requests
        stalled = 0
        while pending:
            before = len(pending)
            with self.request("BatchWriteItem"):
                response = self.client.batch_write_item(RequestItems={self.name: pending})
            pending = list(response.get("UnprocessedItems", {}).get(self.name, []))
            stalled = 0 if len(pending) < before else stalled + 1
            if pending and stalled:
                self._unprocessed(stalled, "BatchWriteItem", len(pending))

    def _unprocessed(self, stalled: int, operation: str, left: int) -> None:
        """Back off after a round that processed nothing; give up after :data:`UNPROCESSED_ROUNDS` of them."""
        if stalled > UNPROCESSED_ROUNDS:
            raise kydb.StoreUnavailable(
                f"DynamoDB is throttling {self.where()}: {operation} left {left} item(s) unprocessed "
                f"{UNPROCESSED_ROUNDS} times in a row; try again later, or raise the table's capacity"
            )
        _backoff(stalled)

    # ------------------------------------------------------------------ transactions

    def transact(self, actions: list[dict[str, Any]], what: str) -> list[dict[str, Any]] | None:
        """Run one ``TransactWriteItems``; ``None`` once committed, else the cancellation reasons.

        The reasons (one per action, ``Code`` ``"None"`` for those not at
        fault) are returned when a condition failed
        (``ConditionalCheckFailed``, with the item as it is when asked for
        with ``ReturnValuesOnConditionCheckFailure``).  A transaction
        cancelled only by other transactions on its items or by throttling
        is tried again with backoff, at most :data:`TRANSACTION_TRIES` times,
        then raises :class:`kydb.StoreUnavailable`; any other cancellation
        raises :class:`~kydb_dynamodb.DynamoDBRequestError`.  botocore gives
        each call a ``ClientRequestToken``, so its own retries of a
        transaction that went through do not apply it twice.
        """
        for attempt in range(TRANSACTION_TRIES):
            with self.request("TransactWriteItems", what):
                try:
                    self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
                    return None
                except ClientError as exc:
                    if _code(exc) != "TransactionCanceledException":
                        raise
                    given: Any = exc.response.get("CancellationReasons") or []
                    reasons: list[dict[str, Any]] = [dict(reason) for reason in given]
            codes = {str(reason.get("Code")) for reason in reasons} - {"None"}
            if "ConditionalCheckFailed" in codes:
                return reasons
            if not codes <= _TRANSIENT_REASONS:
                details = "; ".join(
                    f"{reason.get('Code')}: {reason.get('Message')}"
                    for reason in reasons
                    if reason.get("Code") != "None"
                )
                raise DynamoDBRequestError(f"DynamoDB cancelled a transaction on {self.where(what)}: {details}")
            _backoff(attempt, cap=1.0)
        raise kydb.StoreUnavailable(
            f"DynamoDB kept cancelling a transaction on {self.where(what)} ({', '.join(sorted(codes))}) "
            f"{TRANSACTION_TRIES} times: other writers are changing the same items, or the table is throttled; "
            "try again"
        )
