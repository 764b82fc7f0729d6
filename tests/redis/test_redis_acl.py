"""A tenant whose ACL allows only the keys ``/tenant-a*`` uses kydb fully, once an administrator made /tenant-a.

The tests run in this file's order: the walkthrough, the whole conformance
suite as the tenant, then the check that no key outside the base path was
written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import kydb
from kydb.testing import StoreConformance, unique_name

from .conftest import PrivateRedis, keys_under, plant, raw_client, raw_object

#: What a tenant's Redis user needs: its keys, and the commands kydb sends (scripts run the rest as the user).
TENANT_COMMANDS = (
    "get mget set exists type strlen getrange del unlink zadd zrem zscore zrangebylex zrevrangebylex zlexcount "
    "hget hset hdel hgetall evalsha eval ping hello client|setname"
)
TENANT_ACL = ["on", ">tenant-pw", "resetkeys", "~/tenant-a*", "-@all", *(f"+{c}" for c in TENANT_COMMANDS.split())]


class Tenant:
    def __init__(self, server: PrivateRedis) -> None:
        self.server = server
        self.admin = raw_client(server.url)
        self.url = f"redis://tenant:tenant-pw@127.0.0.1:{server.port}/tenant-a"
        self.before: dict[bytes, Any] = {}

    def outside(self) -> dict[bytes, Any]:
        """Every key outside ``/tenant-a`` and its content."""
        found = {}
        for key in self.admin.scan_iter(count=1000):
            if not key.startswith(b"/tenant-a"):
                found[key] = self.admin.dump(key)
        return found


@pytest.fixture(scope="module")
def tenant(redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    server = PrivateRedis(redis_server_binary, tmp_path_factory.mktemp("acl-redis"))
    try:
        found = Tenant(server)
        admin = kydb.connect(server.url)  # the administrator, connected at the root
        admin.mkdir("/tenant-a")
        admin.close()
        found.admin.execute_command("ACL", "SETUSER", "tenant", *TENANT_ACL)
        found.before = found.outside()
    except BaseException:
        server.stop()
        raise
    yield found
    found.admin.close()
    server.stop()


def test_the_tenant_may_not_touch_anything_else(tenant: Tenant) -> None:
    tenant_client = redis.Redis(port=tenant.server.port, username="tenant", password="tenant-pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tenant_client.get("/other")
    tenant_client.close()
    outside = kydb.connect(f"redis://tenant:tenant-pw@127.0.0.1:{tenant.server.port}/tenant-b?retries=0")
    with pytest.raises(PermissionError) as info:
        outside["/k"] = 1
    assert not isinstance(info.value, KeyError) and "tenant-pw" not in str(info.value)
    outside.close()


def test_the_walkthrough_runs_as_the_tenant(tenant: Tenant, check_walkthrough: Callable[[str], None]) -> None:
    check_walkthrough(tenant.url)
    db = kydb.connect(tenant.url)
    assert db.ls("/") == []
    db.close()


def test_a_missing_base_folder_needs_the_administrator(tenant: Tenant) -> None:
    tenant.admin.execute_command("ACL", "SETUSER", "tenant", "~/tenant-c*")
    db = kydb.connect(f"redis://tenant:tenant-pw@127.0.0.1:{tenant.server.port}/tenant-c?retries=0")
    with pytest.raises(PermissionError, match=r"base folder '/tenant-c/' does not exist.*mkdir '/tenant-c'"):
        db["/k"] = 1
    db.close()
    tenant.admin.execute_command("ACL", "SETUSER", "tenant", "resetkeys", "~/tenant-a*")
    for key in keys_under(tenant.admin, "/tenant-c"):
        tenant.admin.unlink(key)


class TestTenantConformance(StoreConformance):
    """The whole suite, as the tenant, each test under its own folder of /tenant-a."""

    @pytest.fixture
    def new_url(self, tenant: Tenant) -> Callable[[], str]:
        return lambda: f"{tenant.url}/{unique_name('acl')}"

    @pytest.fixture(autouse=True)
    def admin(self, tenant: Tenant) -> None:
        self._admin = tenant.admin  # raw access bypasses kydb (and the tenant's ACL)

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        return raw_object(self._admin, path)

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        plant(self._admin, path, blob)


def test_nothing_outside_the_base_path_was_written(tenant: Tenant) -> None:
    """After the walkthrough and the conformance suite: every key outside /tenant-a is as the administrator left it."""
    assert tenant.outside() == tenant.before
    assert any(key.startswith(b"/tenant-a/") for key in tenant.admin.scan_iter(count=1000))
    root = kydb.connect(tenant.server.url)  # the administrator's DB at the root still lists the tenant
    assert root.ls("/") == ["tenant-a/"] and root.is_dir("/tenant-a")
    root.close()
