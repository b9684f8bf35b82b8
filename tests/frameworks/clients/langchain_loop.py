"""LangChain's tool loop: create_agent with ChatOpenAI (chat completions) and one tool.

    python langchain_loop.py PROMPT [--stream]

--stream streams the model's tokens (stream_mode="messages"), as a chat UI does. Prints the final
answer. Configured by the environment only (OPENAI_API_KEY, HTTPS_PROXY, SSL_CERT_FILE).
"""

import sys

from langchain.agents import create_agent
from langchain.tools import tool
from langchain_openai import ChatOpenAI

MODEL = "gpt-4.1-mini"


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 C in {city}"


def main(prompt: str, stream: bool) -> str:
    agent = create_agent(ChatOpenAI(model=MODEL), tools=[get_weather])
    request = {"messages": [{"role": "user", "content": prompt}]}
    if not stream:
        return agent.invoke(request)["messages"][-1].text
    state: dict = {}
    for mode, chunk in agent.stream(request, stream_mode=["messages", "values"]):
        if mode == "values":
            state = chunk
    return state["messages"][-1].text


if __name__ == "__main__":
    print(main(sys.argv[1], "--stream" in sys.argv[2:]))
