"""openai-agents' tool loop (the Responses API, its default): one agent, one function tool.

    python openai_agents_loop.py PROMPT [--stream]

Prints the final answer. Configured by the environment only (OPENAI_API_KEY, HTTPS_PROXY, SSL_CERT_FILE).
"""

import asyncio
import sys

from agents import Agent, Runner, function_tool

MODEL = "gpt-4.1-mini"


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 C in {city}"


async def main(prompt: str, stream: bool) -> str:
    agent = Agent(name="weather", instructions="Answer with the tool's help.", tools=[get_weather], model=MODEL)
    if not stream:
        return str((await Runner.run(agent, prompt)).final_output)
    result = Runner.run_streamed(agent, prompt)
    async for _ in result.stream_events():
        pass
    return str(result.final_output)


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], "--stream" in sys.argv[2:])))
