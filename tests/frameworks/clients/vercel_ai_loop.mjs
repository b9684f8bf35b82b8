// The Vercel AI SDK's tool loop: generateText (or streamText) with one tool, on @ai-sdk/openai's
// default model (the Responses API; --chat takes openai.chat(), chat completions).
//
//     node vercel_ai_loop.mjs PROMPT [--stream] [--chat]
//
// Prints the final answer. Configured by the environment only (OPENAI_API_KEY, HTTPS_PROXY with
// NODE_USE_ENV_PROXY=1, NODE_EXTRA_CA_CERTS).
import { generateText, stepCountIs, streamText, tool } from "ai";
import { openai } from "@ai-sdk/openai";
import { z } from "zod";

const [prompt, ...flags] = process.argv.slice(2);
const options = {
  model: flags.includes("--chat") ? openai.chat("gpt-4.1-mini") : openai("gpt-4.1-mini"),
  prompt,
  tools: {
    get_weather: tool({
      description: "The current weather in a city.",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `sunny, 21 C in ${city}`,
    }),
  },
  stopWhen: stepCountIs(5),
};

if (flags.includes("--stream")) {
  const result = streamText(options);
  for await (const _ of result.textStream);
  console.log(await result.text);
} else {
  console.log((await generateText(options)).text);
}
