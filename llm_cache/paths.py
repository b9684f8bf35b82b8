"""Places in a JSON body, named the way a user reads them: `system[*].text`, `input[*].id`,
`messages[0].content`, `metadata.user_id`, `tools[*].**.description`.

    name      a member of an object        [*]  every element of a list
    [N]       the N-th element of a list   *    every member of an object
    **        any depth below (zero or more steps)

Agent profiles and `llm_cache_ignore_fields` use them to say where a rule applies, so a rule meant
for a system prompt never touches a tool's arguments.
"""

import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

_TOKEN = re.compile(r"\[(\*|\d+)\]|\*\*|\*|[^.\[\]*]+")


class Step(NamedTuple):
    kind: str  # "key", "index", "each" (list elements), "member" (object members), "deep"
    value: str | int = ""


Path = tuple[Step, ...]


def parse(text: str) -> Path:
    """Parse a path; raises ValueError with a message fit for the user."""
    steps: list[Step] = []
    at = 0
    text = text.strip()
    if not text:
        raise ValueError("an empty path")
    while at < len(text):
        if text[at] == "." and steps:
            at += 1
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"{text!r} is not a path like messages[*].content or metadata.user_id")
        token = match.group(0)
        if match.group(1) == "*":
            steps.append(Step("each"))
        elif match.group(1) is not None:
            steps.append(Step("index", int(match.group(1))))
        elif token == "**":
            steps.append(Step("deep"))
        elif token == "*":
            steps.append(Step("member"))
        else:
            steps.append(Step("key", token))
        at = match.end()
    return tuple(steps)


def places(document: Any, path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every value the path names in the document."""
    yield from _places(document, path, 0)


def _places(node: Any, path: Path, at: int) -> Iterator[tuple[Any, Any]]:
    step = path[at]
    last = at == len(path) - 1
    if step.kind == "deep":
        if last:  # `a.**`: everything below a
            yield from _everything_below(node)
            return
        yield from _places(node, path, at + 1)
        for child in _children(node):
            yield from _places(child, path, at)
        return
    for container, slot in _matching(node, step):
        if last:
            yield container, slot
        else:
            yield from _places(container[slot], path, at + 1)


def _matching(node: Any, step: Step) -> Iterator[tuple[Any, Any]]:
    if step.kind == "key":
        if isinstance(node, dict) and step.value in node:
            yield node, step.value
    elif step.kind == "index":
        if isinstance(node, list) and isinstance(step.value, int) and step.value < len(node):
            yield node, step.value
    elif step.kind == "each":
        if isinstance(node, list):
            yield from ((node, i) for i in range(len(node)))
    elif step.kind == "member" and isinstance(node, dict):
        yield from ((node, k) for k in list(node))


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list):
        yield from node


def _everything_below(node: Any) -> Iterator[tuple[Any, Any]]:
    for container, slot in _matching(node, Step("member" if isinstance(node, dict) else "each")):
        yield container, slot
        yield from _everything_below(container[slot])


def remove(document: Any, path: Path) -> None:
    """Delete every value the path names (in place)."""
    for container, slot in sorted(places(document, path), key=lambda p: p[1] if isinstance(p[1], int) else 0,
                                  reverse=True):
        if isinstance(container, dict):
            container.pop(slot, None)
        elif slot < len(container):
            del container[slot]


def map_strings(document: Any, path: Path, change: Callable[[str], str]) -> None:
    """Replace every string at or below the values the path names with change(string) (in place)."""
    for container, slot in list(places(document, path)):
        container[slot] = map_all(container[slot], change)


def map_all(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of value with every string in it replaced by change(string)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: map_all(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [map_all(v, change) for v in value]
    return value


def strings(document: Any, path: Path) -> Iterator[str]:
    """Every string at or below the values the path names."""
    for container, slot in places(document, path):
        yield from _strings(container[slot])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
