"""Wire models of the OpenAI embeddings API (they make the OpenAPI schema) and its errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from promptembed.engine.embedder import Kind

if TYPE_CHECKING:
    from promptembed.config import ServerConfig


class APIError(Exception):
    """An error answered in OpenAI's shape ``{"error": {...}}``.

    Example:
        >>> APIError(400, "input must not be empty", param="input").status
        400

    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response carrying this error."""
        return error_response(
            self.status, self.message, self.type, self.param, self.code, self.headers
        )


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in OpenAI's error shape."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- wire models (they also make the OpenAPI schema) ------------------------------------


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; unknown fields are ignored, as clients vary."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"input": ["A man is playing a guitar.", "一个男人在弹吉他。"], "model": "m"},
                {"input": "one text", "encoding_format": "base64", "kind": "query"},
            ]
        },
    )

    input: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="A text or a non-empty list of texts. Token-id arrays are refused (400): "
        "this server tokenises with its own model's tokenizer."
    )
    model: str | None = Field(
        None, description="Accepted for compatibility; the server serves one model."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        "float", description="`float` lists (also when null), or `base64` of little-endian float32."
    )
    dimensions: StrictInt | None = Field(
        None, ge=1, description="Must equal the model's dimension if given (no truncation)."
    )
    user: str | None = Field(None, description="Accepted and ignored.")
    kind: Kind | None = Field(
        None,
        description="promptembed extension: `document` or `query` template route; "
        "default from the server config.",
    )


class EmbeddingItem(BaseModel):
    """One vector of the response."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Token counts of the inputs (the model's tokenizer, without the template)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """OpenAI's embeddings response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    """The inside of an OpenAI error."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape."""

    error: ErrorBody


class ModelCard(BaseModel):
    """One entry of ``/v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "promptembed"
    promptembed: dict[str, Any] | None = Field(
        None,
        description="promptembed extension: the served embedder's vector identity, "
        "dimension, stored config and request limits, read by client mode "
        "(`[embedder] server`); null for an embedder without a weights fingerprint.",
    )


class ModelList(BaseModel):
    """The ``/v1/models`` listing."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """``/health``: status, model and batching counters."""

    status: Literal["ok"] = "ok"
    model: str
    dimension: int
    queued_inputs: int
    max_queued_inputs: int
    requests: int
    batches: int
    batched_inputs: int


# -- the OpenAPI document: this server's own limits, so that the schema is the contract ------

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string"},
    }
}


def document_server(
    schema: dict[str, Any], limits: ServerConfig, dimension: int, secured: bool
) -> dict[str, Any]:
    """Write the served limits into a generated OpenAPI document (in place; returned).

    A request the schema accepts is answered 200, one it refuses gets 400: ``input``
    carries ``max_inputs_per_request`` and ``max_chars_per_input``, ``dimensions`` the
    one dimension served. Validation errors are 400 here, so FastAPI's 422 is dropped;
    with an API key the ``/v1`` operations declare bearer authentication.
    """
    props = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    text = {"type": "string", "maxLength": limits.max_chars_per_input}
    props["input"] = {
        "description": props["input"].get("description", ""),
        "anyOf": [
            text,
            {
                "type": "array",
                "items": text,
                "minItems": 1,
                "maxItems": limits.max_inputs_per_request,
            },
        ],
    }
    props["dimensions"] = {
        "description": props["dimensions"].get("description", ""),
        "anyOf": [{"type": "integer", "enum": [dimension]}, {"type": "null"}],
    }
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    if secured:
        schemes = schema["components"].setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer"}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            for status in ("429", "503"):
                if status in operation["responses"]:
                    operation["responses"][status]["headers"] = _RETRY_AFTER
            if secured and path.startswith("/v1"):
                operation["security"] = [{"bearer": []}]
    return schema
