"""Pydantic AI's tool loop: an Agent on its OpenAI model with one tool.

    python pydantic_ai_loop.py PROMPT [--stream] [--chat]

"openai:" is the Responses API in Pydantic AI 2; --chat takes "openai-chat:" (chat completions).
Prints the final answer. Configured by the environment only (OPENAI_API_KEY, HTTPS_PROXY, SSL_CERT_FILE).
"""

import asyncio
import sys

from pydantic_ai import Agent


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 C in {city}"


async def main(prompt: str, stream: bool, chat: bool) -> str:
    agent = Agent(f"{'openai-chat' if chat else 'openai'}:gpt-4.1-mini", tools=[get_weather])
    if not stream:
        return (await agent.run(prompt)).output
    async with agent.run_stream(prompt) as result:
        return await result.get_output()


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], "--stream" in sys.argv[2:], "--chat" in sys.argv[2:])))
