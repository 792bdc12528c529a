"""Real servers for the streaming tests: a fresh tansu broker per test (it keeps consumer groups and topics in
memory, so tests never see each other's), one SecantusDB per module."""

from __future__ import annotations

import pytest

from feature_assets.dev.services.local import local_services, start_kafka


@pytest.fixture
def broker(tmp_path):
    service = start_kafka(log_path=tmp_path / "kafka.log")
    try:
        yield service.url
    finally:
        service.stop()


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory):
    with local_services(tmp_path_factory.mktemp("streaming-mongo"), mongo=True, kafka=False) as services:
        yield services.mongo_uri
