"""scripts/llm-cache in-process: its parsing, filters, cassettes (byte-identical round trips, no
credentials), pruning, and what each command prints. End to end, through a real mitmdump: tests/e2e/test_cli.py."""

import io
import json
import os
import time
import zlib

import orjson
import pytest

import cache_models
from cache_models import CacheEntry
from llm_cache import batches, cassettes, cli, cli_args, cli_output, formats, inventory
from llm_cache.cli_config import database_url
from llm_cache.endpoints import Family
from llm_cache.records import Record
from tests.support.databases import fresh_database

CHAT_URL = "https://api.openai.com:443/v1/chat/completions"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def chat_chunk(delta, finish=None, **extra):
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"  # json.dumps's layout, as Python servers write it


CHAT_STREAM = (chat_chunk({"role": "assistant", "content": "Hel"}) + chat_chunk({"content": "lo ☃"}, "stop")
               + b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],'
                 b'"usage":{"prompt_tokens":1200,"completion_tokens":300}}\n\n'
               + b"data: [DONE]\n\n")
ANTHROPIC_ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": "Hi there"},
                                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                 "input": {"city": "Oslo"}}],
                    "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": 20, "output_tokens": 7}}
ODD = b'{"choices" : [],\n "id": "odd", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}'
OLLAMA_ANSWER = {"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": "Hej"}, "done": True, "done_reason": "stop",
                 "prompt_eval_count": 4, "eval_count": 2}


def chat_request(prompt, **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": prompt}], **extra}
    return orjson.dumps(body)


def record(key, *, family="openai.chat", body, is_stream=False, model="gpt-4o-mini", host="api.openai.com",
           request_body=None, url=CHAT_URL, created_at=1000.0, headers=(("content-type", "application/json"),),
           **extra):
    return Record(key=key, status=200, headers=list(headers), body=body, is_stream=is_stream, created_at=created_at,
                  family=family, host=host, model=model, url=url,
                  request_body=request_body if request_body is not None else chat_request(f"prompt {key[:4]}"),
                  **extra)


def entries():
    """One of each shape a cassette must keep byte for byte."""
    anthropic_stream = formats.json_to_stream(Family.ANTHROPIC_MESSAGES, orjson.dumps(ANTHROPIC_ANSWER),
                                              include_usage=True)
    return [
        record("1" * 64, body=json.dumps({"id": "x", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}).encode(),
            request_body=chat_request("What is the capital of France?", tools=[
                {"type": "function", "function": {"name": "get_weather", "parameters": {}}}]),
            tags=("nightly", "eval_1"), deps=(("doc:42", "v1"), ("table:products", "abc123")), namespace="team-a"),
        record("2" * 64, body=CHAT_STREAM, is_stream=True, created_at=2000.0,
               headers=(("content-type", "text/event-stream"), ("x-request-id", "req_1"))),
        record("3" * 64, family="anthropic.messages", body=anthropic_stream, is_stream=True,
               model="claude-sonnet-4-5", host="api.anthropic.com", url="https://api.anthropic.com:443/v1/messages",
               keyed_headers=(("anthropic-version", "2023-06-01"),), profile="claude-code",
               user_agent="claude-cli/2.1.332", request_body=orjson.dumps({
                   "model": "claude-sonnet-4-5", "system": [{"type": "text", "text": "You are Claude Code."}],
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "weather in Oslo?"}]}]})),
        # OpenRouter's comment lines, and an odd layout no writer of ours reproduces: kept as text
        record("4" * 64, body=b": OPENROUTER PROCESSING\n\n" + CHAT_STREAM, is_stream=True, host="openrouter.ai",
               model="openai/gpt-4o-mini"),
        record("5" * 64, body=ODD, model="unknown-model-x", host="127.0.0.1"),
        record("6" * 64, family="ollama.chat", body=b"".join(
            orjson.dumps(line) + b"\n" for line in (
                {"model": "llama3.2", "message": {"role": "assistant", "content": "Hej"}, "done": False},
                OLLAMA_ANSWER)), is_stream=True, model="llama3.2", host="localhost",
               url="http://localhost:11434/api/chat",
               request_body=b'{"model":"llama3.2","messages":[{"role":"user","content":"hej"}],"x":NaN}'),
    ]


@pytest.fixture
def db(tmp_path):
    """A SQLite cache holding `entries()` as the writer process writes them, and its URL."""
    url = f"sqlite:///{tmp_path}/source.sqlite3"
    cache_models.open_database(url)
    for entry in entries():
        CacheEntry.insert(batches.row_of(entry)).execute()
    CacheEntry.update(hit_count=3, last_hit_at=5000.0).where(CacheEntry.key == "1" * 64).execute()
    CacheEntry.update(hit_count=2, last_hit_at=4000.0).where(CacheEntry.key == "5" * 64).execute()
    return url


def rows(url):
    cache_models.open_database(url)
    return {row["key"]: {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
            for row in CacheEntry.select().dicts()}


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800),
                                           ("2w", 1209600), ("1.5h", 5400), (" 30D ", 2592000)])
def test_durations(text, seconds):
    assert cli_args.parse_duration(text) == seconds


@pytest.mark.parametrize("text, size", [("1000", 1000), ("500MB", 500_000_000), ("2gb", 2_000_000_000),
                                        ("1GiB", 2**30), ("1.5 KB", 1500), ("64KiB", 65536), ("7b", 7)])
def test_sizes(text, size):
    assert cli_args.parse_size(text) == size


@pytest.mark.parametrize("parse, text", [(cli_args.parse_duration, "7 days"), (cli_args.parse_duration, "-1d"),
                                         (cli_args.parse_duration, "d"), (cli_args.parse_size, "500 MBs"),
                                         (cli_args.parse_size, "MB"), (cli_args.parse_size, "1.2.3GB")])
def test_bad_durations_and_sizes_are_refused_with_examples(parse, text):
    with pytest.raises(ValueError, match="e.g."):
        parse(text)


def test_a_bad_argument_stops_the_command_with_its_reason(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prune", "--max-size", "lots"])
    assert "not a size: 'lots'" in capsys.readouterr().err


def test_the_database_is_scripts_runs_unless_given(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("llm_cache_db: sqlite:///data/cache.sqlite3\n")
    monkeypatch.chdir(tmp_path.parent)
    here = os.getcwd()
    assert database_url(None, {}, tmp_path) == f"sqlite:///{tmp_path}/data/cache.sqlite3"
    assert database_url(None, {"LLM_CACHE_DB": "sqlite:///x.db"}, tmp_path) == f"sqlite:///{here}/x.db"
    assert database_url("sqlite:///y.db", {"LLM_CACHE_DB": "sqlite:///x.db"}, tmp_path) == f"sqlite:///{here}/y.db"
    assert database_url(None, {}, tmp_path / "nowhere") == f"sqlite:///{tmp_path}/nowhere/llm-cache.sqlite3"
    with pytest.raises(ValueError, match="schemes"):
        database_url("mysql://db", {}, tmp_path)


def test_a_missing_cache_is_named_not_created(tmp_path, capsys):
    status, _, err = run(capsys, "stats", "--db", f"sqlite:///{tmp_path}/none.sqlite3")
    assert status == 1 and "there is no cache at" in err and not (tmp_path / "none.sqlite3").exists()


@pytest.mark.parametrize("spec, keys", [
    (dict(model="gpt-4o-mini"), "12"),
    (dict(host="API.anthropic.com"), "3"),
    (dict(family="ollama.chat"), "6"),
    (dict(tag="nightly"), "1"),
    (dict(tag="eval_1"), "1"),
    (dict(tag="eval%1"), ""),  # LIKE's wildcards narrow; the tag itself decides
    (dict(tag="night"), ""),
    (dict(created_before=1500.0), "13456"),
    (dict(created_after=1500.0), "2"),
    (dict(text="CAPITAL of france"), "1"),  # in the stored request, any case
    (dict(text="Be brief"), "1245"),  # system prompts too
    (dict(text="weather"), "13"),  # a tool's name, a content block's text
    (dict(text="Paris"), ""),  # the answer is not the request
    (dict(model="gpt-4o-mini", text="capital"), "1"),
])
def test_filters(db, spec, keys):
    found = inventory.listed_entries(inventory.EntryFilter(**spec))
    assert "".join(sorted(row["key"][0] for row in found)) == keys
    assert sorted(inventory.matching_keys(inventory.EntryFilter(**spec))) == sorted(row["key"] for row in found)


def test_ls_lists_newest_first_within_the_limit(db, capsys):
    status, out, _ = run(capsys, "ls", "--db", db, "--json", "--limit", "2")
    listed = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and [row["key"][0] for row in listed] == ["2", "1"]
    assert listed[1]["tags"] == ["nightly", "eval_1"] and listed[1]["hit_count"] == 3 and listed[1]["size"] > 100
    _, text, _ = run(capsys, "ls", "--db", db, "--text", "capital")
    assert text.splitlines()[0].split() == ["key", "recorded", "family", "model", "host", "hits", "kind", "size",
                                            "tags"]
    assert "111111111111" in text and "nightly,eval_1" in text and len(text.splitlines()) == 2


def cassette_of(url, tmp_path, name="out.jsonl", *extra):
    path = tmp_path / name
    assert cli.main(["export", str(path), "--db", url, *extra]) == 0
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """A fresh database to import into."""
    return fresh_database(request.param, tmp_path, "imported.sqlite3")


def test_a_cassette_round_trip_keeps_every_entry_byte_for_byte(db, tmp_path, target, capsys):
    before = rows(db)
    path = cassette_of(db, tmp_path)
    assert cli.main(["import", str(path), "--db", target]) == 0
    after = rows(target)
    assert set(after) == set(before)
    for key, row in before.items():
        for column in ("body", "assembled", "request", "headers", "status", "is_stream", "created_at", "family",
                       "host", "model", "input_tokens", "output_tokens", "expires_at", "sample", "tags"):
            assert after[key][column] == row[column], (key[0], column)
        assert after[key]["hit_count"] == 0 and after[key]["last_hit_at"] is None  # counts are not in a cassette
    assert before["2" * 64]["assembled"] is not None and before["1" * 64]["tags"] == ",nightly,eval_1,"
    # and what a replay reads is the same: a cassette exported from the import is the same file
    assert cassette_of(target, tmp_path, "again.jsonl").read_bytes() == path.read_bytes()


def test_a_cassette_is_sorted_readable_and_stable(db, tmp_path, capsys):
    path = cassette_of(db, tmp_path)
    lines = path.read_bytes().splitlines()
    assert orjson.loads(lines[0]) == cassettes.CASSETTE
    entries_ = [orjson.loads(line) for line in lines[1:]]
    assert [e["key"] for e in entries_] == sorted(e["key"] for e in entries_) == [str(n) * 64 for n in range(1, 7)]
    assert all(list(e) == list(entries_[0]) for e in entries_)  # one fixed order of fields
    json_entry, chat, anthropic, openrouter, odd, ollama = entries_
    assert json_entry["body"]["json"]["choices"][0]["message"]["content"] == "Paris"
    assert json_entry["request"]["body"]["messages"][1]["content"] == "What is the capital of France?"
    assert chat["body"]["layout"] == "python" and chat["body"]["events"][0]["data"]["choices"][0]["delta"] == {
        "role": "assistant", "content": "Hel"}
    assert chat["body"]["events"][-1] == {"event": None, "data": "[DONE]"}
    assert [e["event"] for e in anthropic["body"]["events"]][:2] == ["message_start", "content_block_start"]
    assert anthropic["request"]["headers"] == {"anthropic-version": "2023-06-01"}
    assert anthropic["request"]["profile"] == "claude-code"
    assert openrouter["body"]["events"][0] == {"comment": " OPENROUTER PROCESSING"}
    assert odd["body"] == {"text": ODD.decode()}  # no layout of ours writes it back
    assert ollama["body"]["lines"][-1]["done"] is True
    assert ollama["request"]["body_text"].endswith('"x":NaN}')  # not JSON orjson writes: kept as sent
    assert cassette_of(db, tmp_path, "again.jsonl").read_bytes() == path.read_bytes()


def test_export_takes_the_filters_and_import_replaces_by_key(db, tmp_path, capsys):
    path = cassette_of(db, tmp_path, "chat.jsonl", "--family", "openai.chat", "--older-than", "1d")
    assert [orjson.loads(line)["key"][0] for line in path.read_bytes().splitlines()[1:]] == ["1", "2", "4", "5"]
    cache_models.open_database(db)
    CacheEntry.update(body=b"changed").where(CacheEntry.key == "5" * 64).execute()
    assert cli.main(["import", str(path), "--db", db]) == 0
    after = rows(db)
    assert after["5" * 64]["body"] == ODD
    assert after["5" * 64]["hit_count"] == 2  # an entry already there keeps its hit count
    assert len(after) == 6


def test_a_file_that_is_not_a_cassette_is_refused_with_its_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps(cassettes.CASSETTE) + b'\n{"key": "x"}\n')
    status, _, err = run(capsys, "import", bad, "--db", f"sqlite:///{tmp_path}/new.sqlite3")
    assert status == 1 and "bad.jsonl, line 2: not a cassette entry" in err
    bad.write_bytes(b'{"some": "json"}\n')
    status, _, err = run(capsys, "import", bad, "--db", f"sqlite:///{tmp_path}/new.sqlite3")
    assert status == 1 and "does not start with an llm-cache cassette line" in err


def test_no_credential_ever_reaches_a_cassette(db, tmp_path, capsys):
    # Entries never hold one (the recorder drops them); a row that did anyway (written by hand, or by a
    # bug) still exports without them.
    cache_models.open_database(db)
    leaky = record("7" * 64, body=b'{"choices": []}', headers=(("content-type", "application/json"),
                                                             ("Authorization", "Bearer sk-LEAK1"),
                                                             ("x-api-key", "sk-ant-LEAK2")),
                   keyed_headers=(("api-key", "LEAK3"), ("X-Goog-Api-Key", "LEAK4"), ("anthropic-beta", "b1")))
    CacheEntry.insert(batches.row_of(leaky)).execute()
    text = cassette_of(db, tmp_path).read_text()
    for line in text.splitlines()[1:]:
        entry = json.loads(line)
        names = [name.lower() for name, _ in entry["headers"]] + [name.lower() for name in entry["request"]["headers"]]
        assert not set(names) & set(CREDENTIAL_HEADERS), entry["key"]
    assert "LEAK" not in text and "b1" in text
    assert not any(f'"{name}"' in text.lower() for name in CREDENTIAL_HEADERS)


def test_prune_by_size_evicts_the_least_recently_used(db, capsys):
    cache_models.open_database(db)
    sizes = {row["key"][0]: row["size"] for row in inventory.listed_entries(inventory.EntryFilter())}
    # recency: 1 hit at 5000, 5 hit at 4000, 2 recorded at 2000, the rest recorded at 1000
    keep = sizes["1"] + sizes["5"] + sizes["2"]
    status, out, _ = run(capsys, "prune", "--max-size", keep, "--db", db, "--json")
    report = json.loads(out)
    assert status == 0 and report["over_max_size"] == 3 and report["bytes"] == keep <= report["bytes_before"]
    assert sorted(key[0] for key in rows(db)) == ["1", "2", "5"]
    status, out, _ = run(capsys, "prune", "--max-size", keep - 1, "--db", db, "--json")
    assert json.loads(out)["over_max_size"] == 1 and sorted(key[0] for key in rows(db)) == ["1", "5"]


def test_prune_expired_and_old_entries_then_vacuum(db, capsys):
    cache_models.open_database(db)
    CacheEntry.update(expires_at=1.0).where(CacheEntry.key == "3" * 64).execute()
    CacheEntry.update(expires_at=9e12).where(CacheEntry.key == "4" * 64).execute()
    CacheEntry.update(created_at=time.time() - 3600).where(CacheEntry.key == "6" * 64).execute()
    status, out, _ = run(capsys, "prune", "--expired", "--older-than", "2h", "--vacuum", "--db", db, "--json")
    assert status == 0 and json.loads(out)["expired"] == 1 and json.loads(out)["older_than"] == 4  # 1, 2, 4, 5
    assert sorted(key[0] for key in rows(db)) == ["6"]
    status, _, err = run(capsys, "prune", "--db", db)
    assert status == 1 and "prune needs" in err


def test_clear_asks_first(db, capsys, monkeypatch):
    status, _, err = run(capsys, "clear", "--db", db, stdin="n\n", monkeypatch=monkeypatch)
    assert status == 1 and "delete all 6 entries" in err and len(rows(db)) == 6
    status, _, _ = run(capsys, "clear", "--db", db, stdin="", monkeypatch=monkeypatch)  # no answer is no
    assert status == 1 and len(rows(db)) == 6
    status, out, _ = run(capsys, "clear", "--db", db, stdin="y\n", monkeypatch=monkeypatch)
    assert status == 0 and out == "deleted 6 entries\n" and rows(db) == {}


def test_clear_yes_and_invalidate(db, capsys):
    status, out, _ = run(capsys, "invalidate", "--tag", "eval_1", "--db", db, "--json")
    assert json.loads(out) == {"deleted": 1} and "1" * 64 not in rows(db)
    status, out, _ = run(capsys, "invalidate", "--host", "API.OPENAI.COM", "--model", "gpt-4o-mini", "--db", db)
    assert out == "deleted 1 entries\n" and "2" * 64 not in rows(db)
    status, _, err = run(capsys, "invalidate", "--db", db)
    assert status == 1 and "invalidate needs" in err
    assert run(capsys, "clear", "--yes", "--db", db)[0] == 0 and rows(db) == {}


def test_ls_filters_by_namespace(db, capsys):
    _, out, _ = run(capsys, "ls", "--namespace", "team-a", "--db", db, "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["1" * 64]
    _, out, _ = run(capsys, "ls", "--namespace", "", "--db", db, "--json")
    assert len(out.splitlines()) == 5 and "1" * 64 not in out


def test_reject_deletes_one_entry_by_its_key_prefix(db, capsys):
    status, out, _ = run(capsys, "reject", "3333", "--db", db, "--json")
    assert status == 0 and json.loads(out) == {"rejected": "3" * 64, "deleted": 1} and "3" * 64 not in rows(db)
    status, _, err = run(capsys, "reject", "3333", "--db", db)
    assert status == 1 and "no entry has a key starting with '3333'" in err


def test_stats_count_tokens_and_money_saved_per_model_and_host(db, capsys):
    status, out, _ = run(capsys, "stats", "--db", db, "--json")
    stats = json.loads(out)
    assert status == 0 and (stats["entries"], stats["hits"]) == (6, 5)
    assert stats["prices"].startswith("genai-prices ")
    models = {m["model"]: m for m in stats["models"]}
    mini = models["gpt-4o-mini"]
    assert (mini["hits"], mini["input_tokens_saved"], mini["output_tokens_saved"]) == (3, 3000, 1500)
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output (genai-prices 0.2.3)
    assert mini["money_saved_usd"] == pytest.approx(3000 * 0.15e-6 + 1500 * 0.6e-6)
    unknown = models["unknown-model-x"]
    assert (unknown["money_saved_usd"], unknown["unpriced_hits"], unknown["input_tokens_saved"]) == (None, 2, 20)
    assert stats["money_saved_usd"] == pytest.approx(mini["money_saved_usd"]) and stats["unpriced_hits"] == 2
    assert {h["host"]: h["hits"] for h in stats["hosts"]}["api.openai.com"] == 3
    _, text, _ = run(capsys, "stats", "--db", db)
    assert "unknown price" in text and "$0.00135" in text and "3,000" in text


def test_stats_since_counts_entries_recorded_or_hit_within_it(db, capsys):
    cache_models.open_database(db)
    now = time.time()
    CacheEntry.update(created_at=now - 86400 * 30, last_hit_at=now - 3600).where(CacheEntry.key == "1" * 64).execute()
    CacheEntry.update(created_at=now - 60).where(CacheEntry.key == "6" * 64).execute()
    _, out, _ = run(capsys, "stats", "--since", "1d", "--db", db, "--json")
    assert json.loads(out)["entries"] == 2 and json.loads(out)["hits"] == 3


def test_show_reads_the_request_and_the_assembled_stream(db, capsys):
    status, out, _ = run(capsys, "show", "33", "--db", db)
    assert status == 0 and "claude-sonnet-4-5" in out and "claude-cli/2.1.332 (profile claude-code)" in out
    request, answer = out.split("── request ")[1].split("── answer (a stream, shown assembled) ")
    assert "[system]\n  You are Claude Code." in request and "[user]\n  weather in Oslo?" in request
    assert "[assistant]\n  Hi there\n  → get_weather({\"city\": \"Oslo\"})" in answer
    _, out, _ = run(capsys, "show", "1111", "--db", db)
    assert "tools: get_weather" in out and "[assistant]\n  Paris" in out
    _, out, _ = run(capsys, "show", "2222", "--db", db, "--json")
    shown = json.loads(out)
    assert shown["answer"]["choices"][0]["message"]["content"] == "Hello ☃" and shown["is_stream"] is True
    assert shown["request"]["body"]["messages"][0]["role"] == "system"
    status, _, err = run(capsys, "show", "9", "--db", db)
    assert status == 1 and "no entry has a key starting with '9'" in err


def test_explain_names_what_differs_without_a_store(db, capsys):
    cache_models.open_database(db)
    CacheEntry.insert(batches.row_of(record("8" * 64, body=b'{"choices": []}', created_at=3000.0,
                                                  request_body=chat_request("prompt 1111")))).execute()
    status, out, _ = run(capsys, "explain", "8888", "--db", db, "--json")
    found = json.loads(out)
    assert status == 0 and found["neighbour"] == "2" * 64  # one path differs; from entry 1, two
    assert [d["path"] for d in found["differences"]] == ["messages[1].content"] and "messages" in found["rule"]


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_goes_to_a_terminal_only():
    piped, tty = io.StringIO(), Tty()
    for stream in (piped, tty):
        progress = cli_output.Progress("exported", 10, stream=stream)
        progress(5)
        progress.close()
    assert piped.getvalue() == "" and "exported 5/10" in tty.getvalue()


def test_request_bytes_rebuild_what_was_packed():
    packed = zlib.compress(b'{"url":"u","headers":{},"profile":"","user_agent":"","body":{"a": [1, 2]}}', 1)
    document = cassettes.request_document(packed)
    assert document["body"] == {"a": [1, 2]} and document["layout"] == "python"
    assert cassettes.request_bytes(document) == zlib.decompress(packed)
