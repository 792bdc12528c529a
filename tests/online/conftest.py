"""The online tests' stores: an embedded MongoDB-protocol server per test module, and a store fixture that runs a
test on the in-memory store and on that server (a fresh database each time)."""

from __future__ import annotations

import uuid

import pytest

from feature_assets.online.store import InMemoryKVStore, MongoKVStore


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory):
    from feature_assets.dev.services.local import local_services

    with local_services(tmp_path_factory.mktemp("online-store"), mongo=True, kafka=False) as services:
        yield services.mongo_uri


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.services)])
def store(request):
    if request.param == "memory":
        yield InMemoryKVStore()
        return
    name = f"t_{uuid.uuid4().hex[:10]}"
    mongo = MongoKVStore.from_uri(request.getfixturevalue("mongo_uri"), name)
    yield mongo
    mongo.db.client.drop_database(name)
    mongo.close()
