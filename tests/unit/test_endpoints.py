import pytest

from llm_cache.endpoints import Family, Route, has_expected_shape, route_for


@pytest.mark.parametrize(
    "method, path, family",
    [
        ("POST", "/v1/chat/completions", Family.OPENAI_CHAT),
        ("POST", "/chat/completions", Family.OPENAI_CHAT),
        ("POST", "/api/v1/chat/completions", Family.OPENAI_CHAT),  # OpenRouter
        ("POST", "/openai/v1/chat/completions", Family.OPENAI_CHAT),  # Groq
        ("POST", "/v1/chat/completions/", Family.OPENAI_CHAT),
        ("POST", "/v1/completions", Family.OPENAI_COMPLETIONS),
        ("POST", "/v1/responses", Family.OPENAI_RESPONSES),
        ("POST", "/v1/embeddings", Family.OPENAI_EMBEDDINGS),
        ("POST", "/v1/messages", Family.ANTHROPIC_MESSAGES),
        ("POST", "/v1/messages?beta=true", Family.ANTHROPIC_MESSAGES),  # Claude Code
        ("POST", "/v1/messages/count_tokens", None),
        ("POST", "/v1/messages/batches", None),
        ("GET", "/v1/chat/completions", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/files", None),
        ("POST", "/v1/responses/resp_1/cancel", None),
        ("POST", "/", None),
    ],
)
def test_family_by_method_and_path(method, path, family):
    route = route_for(method, path, "application/json")
    assert (route.family if route else None) == family


@pytest.mark.parametrize(
    "content_type, recognised",
    [("application/json", True), ("application/json; charset=utf-8", True), ("", True),
     ("multipart/form-data; boundary=x", False), ("text/plain", False)],
)
def test_only_json_bodies_are_llm_calls(content_type, recognised):
    assert (route_for("POST", "/v1/chat/completions", content_type) is not None) == recognised


@pytest.mark.parametrize(
    "family, body, ok",
    [
        (Family.OPENAI_CHAT, {"model": "m", "messages": []}, True),
        (Family.OPENAI_CHAT, {"model": "m", "messages": "hi"}, False),
        (Family.OPENAI_CHAT, {"messages": []}, False),
        (Family.OPENAI_CHAT, {"model": 3, "messages": []}, False),
        (Family.OPENAI_CHAT, ["model", "messages"], False),
        (Family.OPENAI_COMPLETIONS, {"model": "m", "prompt": "x"}, True),
        (Family.OPENAI_COMPLETIONS, {"model": "m"}, False),
        (Family.OPENAI_RESPONSES, {"model": "m", "input": "x"}, True),
        (Family.OPENAI_RESPONSES, {"model": "m", "input": [{"role": "user", "content": "x"}]}, True),
        (Family.OPENAI_EMBEDDINGS, {"model": "m", "input": ["a", "b"]}, True),
        (Family.ANTHROPIC_MESSAGES, {"model": "m", "max_tokens": 5, "messages": []}, True),
        (Family.ANTHROPIC_MESSAGES, {"model": "m", "max_tokens": 5}, False),
    ],
)
def test_body_shape_confirms_the_path(family, body, ok):
    assert has_expected_shape(Route(family), body) is ok


def test_family_knows_its_provider():
    assert Family.ANTHROPIC_MESSAGES.provider == "anthropic"
    assert Family.OPENAI_RESPONSES.provider == "openai"
