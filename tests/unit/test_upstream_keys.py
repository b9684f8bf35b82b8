"""Upstream key injection on mitmproxy's test flows: which credentials are replaced, for which
hosts, and that the flow holds the client's dummy key again once the request has left."""

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from llm_cache import upstream_keys
from llm_cache.upstream_keys import UpstreamKeys

REAL = "sk-real-UPSTREAMKEY0123456789"


def flow(host="api.openai.com", path=b"/v1/chat/completions", headers=()):
    request = tutils.treq(host=host, port=443, scheme=b"https", path=path, headers=http.Headers(list(headers)))
    return tflow.tflow(req=request)


@pytest.fixture(autouse=True)
def real_key(monkeypatch):
    monkeypatch.setenv("REAL_KEY", REAL)


@pytest.mark.parametrize(("headers", "path", "expected"), [
    ([(b"authorization", b"Bearer sk-dummy")], b"/v1/chat/completions", {"authorization": f"Bearer {REAL}"}),
    ([(b"x-api-key", b"dummy"), (b"anthropic-version", b"2023-06-01")], b"/v1/messages", {"x-api-key": REAL}),
    ([(b"api-key", b"dummy")], b"/openai/deployments/d/chat/completions", {"api-key": REAL}),
    ([(b"x-goog-api-key", b"dummy")], b"/v1beta/models/m:generateContent", {"x-goog-api-key": REAL}),
])
def test_every_credential_the_client_sent_is_replaced_then_put_back(headers, path, expected):
    keys, f = UpstreamKeys(), flow(path=path, headers=headers)
    sent = dict(f.request.headers)
    keys.inject(f, upstream_keys.parse(["api.openai.com=REAL_KEY"]))
    assert {name: f.request.headers[name] for name in expected} == expected
    keys.put_back(f)
    assert dict(f.request.headers) == sent and REAL not in str(f.get_state())


def test_a_query_key_is_replaced_and_put_back():
    keys, f = UpstreamKeys(), flow(host="generativelanguage.googleapis.com", path=b"/v1beta/models/m:x?key=dummy&a=1")
    keys.inject(f, upstream_keys.parse(["*.googleapis.com=REAL_KEY"]))
    assert f.request.query["key"] == REAL and f.request.query["a"] == "1"
    keys.put_back(f)
    assert f.request.path == "/v1beta/models/m:x?key=dummy&a=1"


def test_other_hosts_answered_flows_and_unset_variables_are_left_alone(caplog, monkeypatch):
    keys, rules = UpstreamKeys(), upstream_keys.parse(["api.openai.com=REAL_KEY", "api.anthropic.com=UNSET_KEY"])
    elsewhere = flow(host="evil.example.com", headers=[(b"authorization", b"Bearer sk-dummy")])
    keys.inject(elsewhere, rules)
    assert elsewhere.request.headers["authorization"] == "Bearer sk-dummy"  # never sent to another host
    hit = flow(headers=[(b"authorization", b"Bearer sk-dummy")])
    hit.response = tutils.tresp()  # answered from the cache: it goes nowhere
    keys.inject(hit, rules)
    assert hit.request.headers["authorization"] == "Bearer sk-dummy"
    monkeypatch.delenv("UNSET_KEY", raising=False)
    for _ in range(3):
        unset = flow(host="api.anthropic.com", headers=[(b"x-api-key", b"dummy")])
        keys.inject(unset, rules)
        assert unset.request.headers["x-api-key"] == "dummy"
    assert caplog.text.count("UNSET_KEY") == 1 and "dummy" not in caplog.text


@pytest.mark.parametrize("value", ["api.openai.com", "=REAL_KEY", "api.openai.com=not a name"])
def test_bad_rules_are_refused(value):
    with pytest.raises(ValueError, match="is not HOST_GLOB=ENV_VAR"):
        upstream_keys.parse([value])


def test_put_back_without_injection_is_harmless():
    untouched = flow(headers=[(b"authorization", b"Bearer x")])
    UpstreamKeys().put_back(untouched)
    assert untouched.request.headers["authorization"] == "Bearer x"
