"""LiteLLM's tool loop, as its docs write it: completion(), run the tool calls, send the results back.

    python litellm_loop.py PROMPT [--stream]

Prints the final answer. Configured by the environment only (OPENAI_API_KEY, HTTPS_PROXY, SSL_CERT_FILE).
"""

import json
import sys

import litellm

MODEL = "openai/gpt-4.1-mini"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def get_weather(city: str) -> str:
    return f"sunny, 21 C in {city}"


def complete(messages: list, stream: bool):
    if not stream:
        return litellm.completion(model=MODEL, messages=messages, tools=TOOLS)
    chunks = list(litellm.completion(model=MODEL, messages=messages, tools=TOOLS, stream=True))
    return litellm.stream_chunk_builder(chunks, messages=messages)


def main(prompt: str, stream: bool) -> str:
    messages: list = [{"role": "user", "content": prompt}]
    for _ in range(5):
        message = complete(messages, stream).choices[0].message
        if not message.tool_calls:
            return message.content
        messages.append(message)
        for call in message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    raise SystemExit("no final answer after 5 turns")


if __name__ == "__main__":
    print(main(sys.argv[1], "--stream" in sys.argv[2:]))
