"""Dagster resource for the online store's MongoDB (or any server speaking its protocol)."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr
from pymongo import MongoClient
from pymongo.database import Database

# Fail fast when the server is unreachable, but leave room for slow bulk writes (the local
# MongoDB-protocol server is written in Python and writes a few thousand documents per second).
SERVER_SELECTION_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_MS = 5_000
SOCKET_TIMEOUT_MS = 120_000


class MongoResource(ConfigurableResource):
    """A MongoDB client and database.

    ``uri`` comes from ``EnvVar("FEATURE_ASSETS_MONGO_URI")``; credentials either sit inside the
    URI or come from ``username``/``password`` (also filled from environment variables).
    """

    uri: str
    database: str = "feature_assets"
    username: str | None = None
    password: str | None = None

    _client: MongoClient | None = PrivateAttr(default=None)

    def get_client(self) -> MongoClient:
        """The client of this resource instance, created on first use."""
        if self._client is None:
            self._client = MongoClient(self.uri, **self._client_options())
        return self._client

    def get_database(self) -> Database:
        return self.get_client()[self.database]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.close()

    def _client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS,
            "connectTimeoutMS": CONNECT_TIMEOUT_MS,
            "socketTimeoutMS": SOCKET_TIMEOUT_MS,
            "appname": "feature-assets",
        }
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        return options
