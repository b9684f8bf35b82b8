"""The semantic tier's pure parts: which turn is embedded and what the context keeps, the guards,
the settings, and the quality of the default on a labelled set of pairs (tests/unit/data/
semantic_pairs.jsonl, written by hand: paraphrases, and hard non-paraphrases such as swapped
entities, changed numbers, negations and swapped directions)."""

import collections

import pytest

from llm_cache import options, semantic_eval
from llm_cache.embedders import LocalEmbedder
from llm_cache.endpoints import Family
from llm_cache.guards import Guard, guard_allows, marks, same_words
from llm_cache.policy import parse_cosine
from llm_cache.turns import PLACEHOLDER, last_turn

PAIRS = semantic_eval.read_pairs(semantic_eval.PAIRS)
DEFAULTS = {option.name: option.default for option in options.SETTINGS}


@pytest.fixture(scope="module")
def scored():
    return semantic_eval.scores(PAIRS, LocalEmbedder())


def quality(scored, threshold: float, guard: Guard) -> tuple[int, int, int]:
    """(right hits, wrong hits, paraphrases) on the labelled set."""
    q = semantic_eval.quality(PAIRS, scored, threshold, guard)
    return q.right, q.wrong, q.paraphrases


def test_the_labelled_set_is_large_and_balanced():
    kinds = collections.Counter(pair["same"] for pair in PAIRS)
    assert len(PAIRS) >= 100 and kinds[True] >= 40 and kinds[False] >= 40
    assert len({(pair["a"], pair["b"]) for pair in PAIRS}) == len(PAIRS)


def test_the_default_gives_no_wrong_hit_on_the_labelled_set(scored):
    threshold, guard = float(DEFAULTS["semantic_threshold"]), Guard(DEFAULTS["semantic_guard"])
    right, wrong, paraphrases = quality(scored, threshold, guard)
    print(f"\nlocal embedder, threshold {threshold}, guard {guard}: precision "
          f"{right / max(1, right + wrong):.3f}, recall {right / paraphrases:.3f} ({right}/{paraphrases})")
    assert wrong == 0
    assert right >= 10  # it does answer near-repeats: typos, case, punctuation, framing


@pytest.mark.parametrize("threshold", [0.7, 0.85, 0.92])
def test_the_vectors_alone_would_serve_wrong_answers(scored, threshold):
    """Why the guard exists: without it every threshold serves wrong answers on this set (swapped
    directions score 1.0 with a bag-of-words embedder)."""
    right, wrong, paraphrases = quality(scored, threshold, Guard.OFF)
    marks_right, marks_wrong, _ = quality(scored, threshold, Guard.MARKS)
    strict_right, strict_wrong, _ = quality(scored, threshold, Guard.STRICT)
    print(f"\nthreshold {threshold}: off {right}/{wrong}, marks {marks_right}/{marks_wrong}, "
          f"strict {strict_right}/{strict_wrong} (right/wrong hits of {paraphrases} paraphrases)")
    assert wrong > marks_wrong > strict_wrong == 0
    assert right >= marks_right >= strict_right


@pytest.mark.parametrize(("a", "b", "same"), [
    ("What's the diffrence between let and const?", "what is the difference between let and const", True),
    ("Please summarise this text", "summarize this text", True),
    ("Sort the results in ascending order.", "Sort the results in descending order.", False),
    ("Install Python 3.11 on macOS.", "Install Python 3.12 on macOS.", False),
    ("Read src/app.py and fix the test", "Read src/api.py and fix the test", False),
    ("Convert Celsius to Fahrenheit", "Convert Fahrenheit to Celsius", False),
    ("Delete the file", "Don't delete the file", False),
    ("What will the weather be in Paris?", "What was the weather in Paris?", False),
    ("Do you know me?", "Do I know you?", False),
    ("Is the file too large?", "Is the file large?", False),
    ("Tell me about cats", "Tell me about bats", False),
    ("How do I lose weight", "How do I lost weight", False),
    ("Fix teh typo in README.md", "fix the typo in README.md", True),
])
def test_the_strict_guard(a, b, same):
    assert same_words(a, b) is same
    assert same_words(b, a) is same


def test_marks_are_the_words_embeddings_blur():
    assert marks("Don't convert 30 degrees from Celsius to Fahrenheit in utils/io.py") == [
        "not", "30", "celsius", "fahrenheit", "utils/io.py"]


@pytest.mark.parametrize(("a", "b", "same"), [
    ("Convert 30 degrees from Celsius to Fahrenheit", "Convert 30 degrees from Fahrenheit to Celsius", False),
    ("Is Python faster than Java?", "Is Java faster than Python?", False),
    ("Write a Python function to sort a list", "write a python function to sort a list", True),
    ("What is the capital of France?", "What is the capital of Germany?", False),
])
def test_the_marks_guard_compares_names_in_order_whatever_their_case(a, b, same):
    assert guard_allows(Guard.MARKS, a, b) is same


@pytest.mark.parametrize(("family", "body", "text"), [
    (Family.OPENAI_CHAT, {"model": "m", "messages": [{"role": "system", "content": "s"},
                                                     {"role": "user", "content": "hi there"}]}, "hi there"),
    (Family.OPENAI_CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                    {"type": "text", "text": "b"}]}]}, "a\nb"),
    (Family.ANTHROPIC_MESSAGES, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}]}, "hello"),
    (Family.OPENAI_RESPONSES, {"input": "just text"}, "just text"),
    (Family.OPENAI_RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_text", "text": "q"}]}]}, "q"),
    (Family.GEMINI_GENERATE, {"contents": [{"role": "user", "parts": [{"text": "g"}]}]}, "g"),
    (Family.OLLAMA_GENERATE, {"prompt": "p"}, "p"),
])
def test_the_last_user_turn_is_embedded_and_the_rest_is_the_context(family, body, text):
    turn = last_turn(family, body)
    assert turn is not None and turn.text == text
    assert PLACEHOLDER in strings(turn.context) and text not in strings(turn.context)


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize(("family", "body"), [
    (Family.OPENAI_CHAT, {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    (Family.OPENAI_CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:"}}]}]}),
    (Family.OPENAI_CHAT, {"messages": [{"role": "tool", "tool_call_id": "1", "content": "42"}]}),
    (Family.ANTHROPIC_MESSAGES, {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "42"}]}]}),
    (Family.OLLAMA_CHAT, {"messages": [{"role": "user", "content": "what is this", "images": ["..."]}]}),
    (Family.OPENAI_EMBEDDINGS, {"input": "text"}),
    (Family.OPENAI_CHAT, {"messages": [{"role": "user", "content": "   "}]}),
])
def test_other_last_turns_are_not_eligible(family, body):
    assert last_turn(family, body) is None


def test_tool_results_are_eligible_only_when_allowed():
    body = {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]}]}
    assert last_turn(Family.ANTHROPIC_MESSAGES, body) is None
    turn = last_turn(Family.ANTHROPIC_MESSAGES, body, tool_results=True)
    assert turn is not None and turn.text == "42"


def test_the_tiers_are_off_by_default_and_their_options_are_checked():
    assert options.settings_from_values(lambda name: DEFAULTS.get(name.removeprefix("llm_cache_"))).semantic is None
    values = {**DEFAULTS, "semantic": True}
    semantic = options.policy.settings_from(values).semantic
    assert semantic is not None and semantic.embedder == "local" and semantic.threshold == 0.75
    for bad, message in ((dict(semantic_threshold="1.5"), "from 0 to 1"), (dict(semantic_guard="loose"), "strict"),
                         (dict(semantic_embedder="ftp://x"), "URL"), (dict(synthesis=True), "synthesis_url"),
                         (dict(semantic_embedder="https://u:p@host/v1/embeddings"), "credential"),
                         (dict(semantic_embedder="https://host/v1/embeddings?key=k"), "credential")):
        with pytest.raises(ValueError, match=message):
            options.policy.settings_from({**values, **bad})
    with pytest.raises(ValueError, match="needs llm_cache_semantic"):
        options.policy.settings_from({**DEFAULTS, "synthesis": True})
    assert parse_cosine("x", "0.9") == 0.9


@pytest.mark.parametrize("family", [Family.OPENAI_CHAT, Family.OPENAI_COMPLETIONS, Family.OPENAI_RESPONSES,
                                    Family.ANTHROPIC_MESSAGES, Family.GEMINI_GENERATE, Family.OLLAMA_CHAT,
                                    Family.OLLAMA_GENERATE])
def test_a_synthesised_answer_is_a_complete_answer_of_its_protocol_in_json_and_as_a_stream(family):
    import orjson

    from llm_cache import answers, formats, synthesis
    from llm_cache.endpoints import Wire
    from llm_cache.records import Record

    body = orjson.dumps(synthesis.reply_body(family, "m", "Paris is the capital.", 1e9))
    assert formats.json_problem(family, body) is None
    record = Record(key="", status=200, headers=[("content-type", "application/json")], body=body,
                    is_stream=False, created_at=1e9, family=family.value)
    assert synthesis.answer_text(record).endswith("Paris is the capital.")
    stream = answers.replay(record, family, want=formats.stored_wire(family), include_usage=False)
    assert stream is not None and formats.stream_problem(family, stream.body) is None
    assert b"Paris is the capital." in stream.body
    assert answers.replay(record, family, want=Wire.JSON, include_usage=False).body == body
