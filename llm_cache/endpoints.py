"""Which requests are LLM calls: recognised by the request line first (cheap), then confirmed by the
body's shape. A recognised call is a Route: its family, and what the path itself says about it (a
model in the path, a stream decided by the path, how its stream is framed).

Anything not recognised here is passed through untouched and never recorded.
"""

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple


class Family(StrEnum):
    OPENAI_CHAT = "openai.chat"
    OPENAI_COMPLETIONS = "openai.completions"
    OPENAI_RESPONSES = "openai.responses"
    OPENAI_EMBEDDINGS = "openai.embeddings"
    ANTHROPIC_MESSAGES = "anthropic.messages"
    GEMINI_GENERATE = "gemini.generate"
    GEMINI_EMBED = "gemini.embed"
    OLLAMA_CHAT = "ollama.chat"
    OLLAMA_GENERATE = "ollama.generate"
    OLLAMA_EMBED = "ollama.embed"
    BEDROCK = "bedrock.runtime"

    @property
    def provider(self) -> str:
        return self.value.split(".", 1)[0]


class Wire(StrEnum):
    """How an answer is framed on the wire."""

    JSON = "json"
    SSE = "sse"  # text/event-stream
    NDJSON = "ndjson"  # Ollama: one JSON object per line
    JSON_ARRAY = "json-array"  # Gemini's streamGenerateContent without ?alt=sse: one JSON array, sent piece by piece


class Route(NamedTuple):
    family: Family
    model: str | None = None  # the model named in the path (Gemini, Vertex, Azure deployments, Bedrock)
    stream: bool | None = None  # the path decides (Gemini's :streamGenerateContent); None: the body does
    stream_wire: Wire = Wire.SSE  # the framing of this request's stream, when it streams


# Families whose calls are recognised (and shown as BYPASS with this reason) but never cached.
PASSED_THROUGH: dict[Family, str] = {
    Family.BEDROCK: "Bedrock calls are passed through: each is SigV4-signed and streams are binary "
                    "AWS event streams, which llm-cache does not cache",
}

# Longest suffix first: "/chat/completions" must win over "/completions".
_PATH_SUFFIXES: tuple[tuple[str, Family], ...] = (
    ("/v1/messages", Family.ANTHROPIC_MESSAGES),
    ("/chat/completions", Family.OPENAI_CHAT),
    ("/completions", Family.OPENAI_COMPLETIONS),  # also /fim/completions
    ("/responses", Family.OPENAI_RESPONSES),  # also Azure /openai/v1/responses, Codex /backend-api/codex/responses
    ("/embeddings", Family.OPENAI_EMBEDDINGS),
    ("/api/chat", Family.OLLAMA_CHAT),
    ("/api/generate", Family.OLLAMA_GENERATE),
    ("/api/embed", Family.OLLAMA_EMBED),
)
_OLLAMA_EMBEDDINGS = "/api/embeddings"  # Ollama's older embedding route; must not read as OpenAI's

# Gemini: /v1beta/models/{m}:method, Vertex /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:method,
# and the Gemini CLI's /v1internal:method (model in the body).
_GEMINI = re.compile(r"(?:/(?:models|tunedModels)/(?P<model>[^/:]+))?:(?P<method>generateContent|streamGenerateContent|"
                     r"embedContent|batchEmbedContents)$")
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/(?P<model>[^/]+)/")
_BEDROCK = re.compile(r"/model/(?P<model>[^/]+)/(?:invoke|invoke-with-response-stream|converse|converse-stream)$")

# The field that, next to "model", proves the body is the call the path says it is.
_SHAPE_FIELD: dict[Family, str] = {
    Family.OPENAI_CHAT: "messages",
    Family.OPENAI_COMPLETIONS: "prompt",
    Family.OPENAI_RESPONSES: "input",
    Family.OPENAI_EMBEDDINGS: "input",
    Family.ANTHROPIC_MESSAGES: "messages",
    Family.OLLAMA_CHAT: "messages",
    Family.OLLAMA_GENERATE: "prompt",
}

# Ollama streams unless the body says "stream": false.
STREAM_BY_DEFAULT = frozenset({Family.OLLAMA_CHAT, Family.OLLAMA_GENERATE})


def route_for(method: str, path: str, content_type: str) -> Route | None:
    """The route a request line points at, or None for traffic we leave alone."""
    if method != "POST":
        return None
    if content_type and "json" not in content_type.lower():
        return None
    route, _, query = path.partition("?")
    route = route.rstrip("/")
    if "/model/" in route and (bedrock := _BEDROCK.search(route)):  # before Gemini: its ids carry ":" too
        return Route(Family.BEDROCK, model=bedrock["model"])
    if ":" in route:
        return _gemini_route(route, query)
    if route.endswith(_OLLAMA_EMBEDDINGS):
        return Route(Family.OLLAMA_EMBED, stream_wire=Wire.NDJSON)
    for suffix, family in _PATH_SUFFIXES:
        if route.endswith(suffix):
            if family.provider == "ollama":
                return Route(family, stream_wire=Wire.NDJSON)
            deployment = _AZURE_DEPLOYMENT.search(route)
            return Route(family, model=deployment["model"] if deployment else None)
    return None


def _gemini_route(route: str, query: str) -> Route | None:
    match = _GEMINI.search(route)
    if match is None or (match["model"] is None and not route.endswith("/v1internal:" + match["method"])):
        return None
    if match["method"] in ("embedContent", "batchEmbedContents"):
        return Route(Family.GEMINI_EMBED, model=match["model"], stream=False)
    streams = match["method"] == "streamGenerateContent"
    sse = any(part == "alt=sse" for part in query.split("&"))
    return Route(Family.GEMINI_GENERATE, model=match["model"], stream=streams,
                 stream_wire=Wire.SSE if sse else Wire.JSON_ARRAY)


def has_expected_shape(route: Route, body: Any) -> bool:
    """True when a parsed request body looks like a call of this route (a model + its main field)."""
    if not isinstance(body, Mapping):
        return False
    family = route.family
    if route.model is None and not isinstance(body.get("model"), str):
        return False
    if family is Family.GEMINI_GENERATE:
        inner = body.get("request") if "request" in body else body  # the Gemini CLI wraps it
        return isinstance(inner, Mapping) and isinstance(inner.get("contents"), list)
    if family is Family.GEMINI_EMBED:
        return "content" in body or isinstance(body.get("requests"), list)
    if family is Family.OLLAMA_EMBED:
        return body.get("input") is not None or body.get("prompt") is not None
    if family is Family.BEDROCK:
        return True
    field = _SHAPE_FIELD[family]
    value = body.get(field)
    if field == "messages":
        return isinstance(value, list)
    return value is not None


def model_of(route: Route, body: Mapping[str, Any]) -> str:
    """The model a call asks for: the body's when it names one (Azure's SDK sends the deployment
    there too), else the path's."""
    model = body.get("model")
    return model if isinstance(model, str) else route.model or ""


def streams(route: Route, body: Mapping[str, Any]) -> bool:
    """Whether the caller asked for a stream."""
    if route.stream is not None:
        return route.stream
    return body.get("stream", route.family in STREAM_BY_DEFAULT) is True


def is_websocket_upgrade(method: str, path: str, upgrade: str) -> bool:
    """The Codex CLI's first try: a WebSocket upgrade of a Responses endpoint."""
    return method == "GET" and "websocket" in upgrade.lower() and path.partition("?")[0].rstrip("/").endswith(
        "/responses")
