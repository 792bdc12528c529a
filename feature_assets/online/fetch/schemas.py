"""The HTTP service's response and error bodies as pydantic models, for its OpenAPI document.

They describe what `Fetcher` answers (the same shape the CLI's `fetch` prints); the service still sends the
fetcher's dicts as they are, so these models cost nothing per request.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class ErrorType(str, Enum):
    """Why a response has an error."""

    invalid_key = "invalid_key"  # the request misses a key or has one of the wrong type: `values` is null
    no_data = "no_data"  # no batch loaded at or before the fetch day: that part's features are null
    bad_data = "bad_data"  # a stored value could not be decoded: that part's features are null


class FetchResponse(BaseModel):
    """The answer to one request (a JSON object of keys)."""

    values: dict[str, Any] | None = Field(
        description="feature name -> value, named as in the offline join's output; null for an invalid request"
    )
    error: str | None = Field(description="what went wrong for this request (several parts: joined by '; ')")
    error_type: ErrorType | None = Field(description="null when `error` is null")


class FetchBatchResponse(RootModel[list[FetchResponse]]):
    """The answers to a batch (a JSON array of requests), in request order. Each request is answered on its
    own: one with a missing or mistyped key gets `values: null` and `error_type: invalid_key`, the others
    their features."""


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer of a fetch."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "join 'quickstart.nope.v1' is not in the metadata store"}]}
    )

    detail: str = Field(description="the cause, naming the request, key, config or limit at fault")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = Field(None, description="why the online store is unavailable")


ERROR_DESCRIPTIONS = {
    400: "Invalid request: a body that is neither a JSON object nor an array, a non-integer `at_millis`, a single "
    "request with a missing or mistyped key (in a batch such a request is answered with its own error instead), "
    "or a derivation the online fetcher cannot apply",
    404: "No join or group-by of that name in the metadata store (run metadata-upload for it)",
    413: "A batch of more requests than the service's limit (`serve --max-batch`)",
    503: "The online store (MongoDB) is unreachable; the service reconnects by itself, so retry",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: each status code typed with `ErrorBody`."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}
