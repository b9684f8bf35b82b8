"""Finding an agent's volatile fields yourself: a recorded miss that comes close to a stored request
is named in the log (and the flow's comment), `llmcache.explain` turns it into config.yaml, and with
that rule the next run hits. Through real mitmdump processes with the real OpenAI SDK."""

import re

from ruamel.yaml import YAML

from tests.e2e.control_helpers import chat, point_agent_at, text
from tests.support.procs import Mitmdump, explain, wait_for

NEAR_MISS = re.compile(r"near miss: (\w{12}) differs from (\w{12}) at messages\[0\]\.content: "
                       r'"[^"]*build 11111 done" -> "[^"]*build 22222 done"')


def test_a_near_miss_is_named_and_its_rule_makes_the_next_run_hit(tmp_path, certs, fake, monkeypatch, prompt):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake)
    try:
        point_agent_at(proxy, monkeypatch)
        first, _ = chat(f"{prompt}: build 11111 done")
        second, _ = chat(f"{prompt}: build 22222 done")
        assert (first["x-llm-cache"], second["x-llm-cache"]) == ("MISS", "MISS")
        assert len(second["x-llm-cache-key"]) == 64, "a miss names the key it is stored under"
        assert wait_for(lambda: NEAR_MISS.search(proxy.text()), timeout=10), proxy.text()[-3000:]
        found = NEAR_MISS.search(proxy.text())
        assert found and found.group(1) == second["x-llm-cache-key"][:12]
        assert found.group(2) == first["x-llm-cache-key"][:12]
        assert "llmcache.explain" in proxy.text()
    finally:
        proxy.stop()

    # What `llmcache.explain KEY` answers, read from the same database.
    explained = explain(proxy.db_path, found.group(1))
    assert explained is not None
    _, suggestion = explained
    config = YAML(typ="safe").load(suggestion)
    assert "pattern: '(?<=build )[0-9]+'" in suggestion and 'user_agent: ["openai/*"]' in suggestion

    ruled = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake,
                     extra=["--set", f"llm_cache_profiles={config['llm_cache_profiles']}"])
    try:
        point_agent_at(ruled, monkeypatch)
        third, recorded = chat(f"{prompt}: build 33333 done")
        fourth, replayed = chat(f"{prompt}: build 44444 done")
        assert (third["x-llm-cache"], fourth["x-llm-cache"]) == ("MISS", "HIT")
        assert text(replayed) == text(recorded)
        other, _ = chat(f"{prompt}: deploy 55555 done")
        assert other["x-llm-cache"] == "MISS", "the rule covers the build number only"
    finally:
        ruled.stop()
