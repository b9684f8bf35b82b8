"""Units of issue 3's control layer: options, per-request controls, plans, samples, diffs (secrets: test_secrets.py)."""

import pytest

from llm_cache import closest, controls, lookup, options, plan, policy
from llm_cache.keys import BodyFacts
from llm_cache.records import Record

DEFAULTS = {**options.DEFAULTS, "max_request_bytes": 100, "max_response_bytes": 100}


def settings(**changes):
    return policy.settings_from({**DEFAULTS, **changes})


def facts(model="gpt-4o", deterministic=False, bypass=None):
    return BodyFacts("d" * 64, model, False, False, deterministic, bypass, bypass is not None)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("mode", "replay-ish", "llm_cache_mode must be one of record, replay, refresh, readonly, writeonly, off"),
    ("scope", "team", "llm_cache_scope must be one of global, credential"),
    ("temperature", "low", "llm_cache_temperature must be one of any, deterministic"),
    ("ttl", -1, "llm_cache_ttl must be 0 or more"),
    ("samples", 0, "llm_cache_samples must be 1 or more"),
    ("normalise", ["(unclosed"], "llm_cache_normalise: '(unclosed' is not a valid regular expression"),
    ("ignore_fields", ["metadata..x"], "llm_cache_ignore_fields: 'metadata..x' is not a path like"),
    ("profiles", "x: {match: 3}", "llm_cache_profiles: profile 'x': match wants user_agent, headers and/or family"),
    ("profiles", "x: {volatile: [{at: 'a['}]}", "each rule wants at and pattern"),
    ("profiles", "x: {extends: nobody}", "extends 'nobody', which is not a profile"),
    ("profiles", "/nowhere/profiles.yaml", "llm_cache_profiles: cannot read '/nowhere/profiles.yaml'"),
])
def test_bad_options_are_refused_with_the_valid_values(option, value, message):
    with pytest.raises(ValueError, match=None) as e:
        settings(**{option: value})
    assert message in str(e.value)


def test_modes_say_what_they_do():
    assert [m for m in policy.Mode if m.looks_up] == ["record", "replay", "readonly"]
    assert [m for m in policy.Mode if m.records] == ["record", "refresh", "writeonly"]
    assert settings(mode=" Replay ").mode is policy.Mode.REPLAY


def test_allow_and_deny_globs_deny_wins():
    s = settings(allow_hosts=["*.openai.com"], deny_models=["gpt-4o-*"], deny_families=["openai.embeddings"])
    assert s.refuses("api.openai.com", "gpt-4o", "openai.chat") is None
    assert "not in the allow list" in s.refuses("api.groq.com", "gpt-4o", "openai.chat")
    assert "model gpt-4o-mini denied by 'gpt-4o-*'" == s.refuses("api.openai.com", "gpt-4o-mini", "openai.chat")
    assert "family" in s.refuses("api.openai.com", "gpt-4o", "openai.embeddings")


def test_headers_give_the_request_controls():
    c = controls.read_controls([("Cache-Control", "no-store, max-age=60"), ("X-LLM-Cache-TTL", "30"),
                                ("X-LLM-Cache-Namespace", "team-a"), ("X-LLM-Cache-Tags", "b, a,b")])
    assert c == controls.Controls(no_store=True, max_age=60, ttl=30, namespace="team-a", tags=("a", "b"))
    assert controls.read_controls([("cache-control", "no-cache, only-if-cached")])[2:5] == (True, None, True)
    assert controls.read_controls([("X-Cache-Bypass", "true")]).bypass == "X-Cache-Bypass: true"
    assert controls.read_controls([("X-Cache-Bypass", "false")]).bypass is None
    assert controls.read_controls([("cache-control", "max-age=soon")]).max_age is None  # RFC 9111: ignored
    key = "ab" * 32
    assert controls.read_controls([("X-LLM-Cache-Reject", f" {key.upper()} ")]).reject == (key,)
    assert "x-llm-cache-reject" in controls.OWN_HEADERS  # never sent upstream
    deps = controls.read_controls([("X-LLM-Cache-Deps", "table:products=abc123, doc:42"),
                                   ("X-Cachecore-Deps", "doc:7=v2")]).deps
    assert deps == (("doc:42", ""), ("doc:7", "v2"), ("table:products", "abc123"))
    assert {"x-llm-cache-deps", "x-cachecore-deps"} <= controls.OWN_HEADERS


def test_an_entry_recorded_under_another_dependency_version_is_stale():
    entry = Record(key="k", status=200, headers=[], body=b"{}", is_stream=False, created_at=100.0,
                   deps=(("doc:42", "v1"),))
    s = settings()
    assert not plan.is_expired(entry, 101.0, s, controls.NO_CONTROLS, {"doc:42": "v1"})
    assert plan.is_expired(entry, 101.0, s, controls.NO_CONTROLS, {"doc:42": "v2"})
    assert plan.is_expired(entry, 101.0, s, controls.NO_CONTROLS, {})  # a version it never had


@pytest.mark.parametrize(("name", "value"), [("X-LLM-Cache-TTL", "1h"), ("X-LLM-Cache-Namespace", "a b"),
                                             ("X-LLM-Cache-Tags", "ok,%bad"), ("X-LLM-Cache-Reject", "abc123"),
                                             ("X-LLM-Cache-Deps", "doc 42=v1")])
def test_a_malformed_control_header_bypasses_with_its_name(name, value):
    assert name in controls.read_controls([(name, value)]).bypass


@pytest.mark.parametrize(("mode", "look_up", "skip", "replay_only"), [
    ("record", True, None, False), ("replay", True, "llm_cache_mode is replay", True),
    ("refresh", False, None, False), ("readonly", True, "llm_cache_mode is readonly", False),
    ("writeonly", False, None, False),
])
def test_each_mode_plans_its_lookup_and_recording(mode, look_up, skip, replay_only):
    p = plan.plan_for(settings(mode=mode), controls.NO_CONTROLS, facts(), family="openai.chat", host="h")
    assert (p.bypass, p.look_up, p.skip_store, p.replay_only) == (None, look_up, skip, replay_only)


def test_request_controls_refine_the_plan():
    s, f = settings(), facts()
    def p(**kw):
        return plan.plan_for(s, controls.Controls(**kw), f, family="openai.chat", host="h")
    assert p(no_store=True)[1:] == (True, "Cache-Control: no-store", False)
    assert p(no_cache=True)[1:] == (False, None, False)
    assert p(only_if_cached=True)[1:] == (True, "Cache-Control: only-if-cached", True)
    assert p(bypass="X-Cache-Bypass: 1").bypass == "X-Cache-Bypass: 1"
    assert plan.plan_for(s, controls.NO_CONTROLS, facts(bypass='"cache": false'), family="f", host="h").bypass
    deterministic = settings(temperature="deterministic")
    assert "deterministic" in plan.plan_for(deterministic, controls.NO_CONTROLS, facts(), family="f", host="h").bypass
    assert plan.plan_for(deterministic, controls.NO_CONTROLS, facts(deterministic=True), family="f", host="h").look_up


def entry(created_at=1000.0, expires_at=None, key="k"):
    return Record(key=key, status=200, headers=[], body=b"{}", is_stream=False, created_at=created_at,
                  expires_at=expires_at)


@pytest.mark.parametrize(("kw", "control", "expired"), [
    ({}, {}, False), ({"ttl": 100}, {}, True), ({"ttl": 101}, {}, False), ({}, {"ttl": 50}, True),
    ({}, {"max_age": 100}, False), ({}, {"max_age": 99}, True), ({}, {"ttl": 0}, False),
])
def test_expiry_by_proxy_ttl_request_ttl_and_max_age(kw, control, expired):
    assert plan.is_expired(entry(), 1100.0, settings(**kw), controls.Controls(**control)) is expired
    assert plan.is_expired(entry(expires_at=1100.0), 1100.0, settings(), controls.NO_CONTROLS)


def test_samples_record_the_nth_then_wrap_around_what_is_stored():
    stored = {}
    def find(key):
        return stored.get(key)
    def look(nth, can_record=True):
        return lookup.find_entry(find, "k", nth=nth, samples=3, can_record=can_record, is_expired=lambda r: False)
    assert look(0) == (None, None, 0)
    stored["k"] = entry(key="k")
    assert look(0).fresh.key == "k" and look(1) == (None, None, 1)
    stored[lookup.entry_key("k", 1)] = entry(key=lookup.entry_key("k", 1))
    assert look(1).fresh.key == lookup.entry_key("k", 1)
    assert look(2, can_record=False).fresh.key == "k"  # wraps over the two stored samples
    assert look(3).fresh.key == lookup.entry_key("k", 1)  # past N: 3 % 2
    assert lookup.find_entry(find, "k", nth=5, samples=1, can_record=True, is_expired=lambda r: False).fresh.key == "k"
    expired = lookup.find_entry(find, "k", nth=0, samples=3, can_record=True, is_expired=lambda r: True)
    assert expired.fresh is None and expired.stale.key == "k" and expired.sample == 0


def test_the_closest_request_and_where_it_differs():
    body = {"model": "m", "messages": [{"role": "user", "content": "at 10:02"}], "temperature": 0}
    near = {"model": "m", "messages": [{"role": "user", "content": "at 10:01"}], "temperature": 0}
    far = {"model": "x", "messages": [], "top_p": 1}
    best = closest.nearest(body, [("far", 2.0, far), ("near", 1.0, near)])
    assert best == ("near", 1.0, ["messages[0].content"], 1)
    assert "entry near, differs at: messages[0].content." in closest.describe(best)
    assert closest.differing_paths(far, body) == ["messages[0]", "model", "temperature", "top_p"]
    assert closest.differing_paths(1, 1.0) == ["(the whole body)"]
    assert closest.describe(None) == "No request to this endpoint is stored yet."
