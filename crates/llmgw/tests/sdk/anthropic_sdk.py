"""Drives a running llmgw with the official Anthropic Python SDK.

Run by the `process::protocols_sdk` e2e test (once against an Anthropic
deployment, once against an OpenAI-compatible one), or by hand against any
llmgw whose models are backed by the mock upstream:

    ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=sk-... \
        MODEL=claude-model REASONER=claude-reasoner MODEL_429=claude-429 \
        MODEL_500=claude-500 MODEL_CUT=claude-cut python anthropic_sdk.py

Environment: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY (read by the SDK),
MODEL (answers in text, calls `get_weather` when asked about the weather),
REASONER (thinks first), MODEL_429 / MODEL_500 / MODEL_CUT (upstreams that
rate limit, fail, cut their streams), SIGNED_THINKING=1 when thinking comes
from Anthropic itself (signed) rather than translated, UPSTREAM (a label).

Prints one line per check and exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

import anthropic

MODEL = os.environ.get("MODEL", "claude-model")
REASONER = os.environ.get("REASONER", "claude-reasoner")
MODEL_429 = os.environ.get("MODEL_429", "claude-429")
MODEL_500 = os.environ.get("MODEL_500", "claude-500")
MODEL_CUT = os.environ.get("MODEL_CUT", "claude-cut")
SIGNED = os.environ.get("SIGNED_THINKING", "1") == "1"
UPSTREAM = os.environ.get("UPSTREAM", "?")
PROMPT = [{"role": "user", "content": "Tell me about foxes."}]
WEATHER = [{"role": "user", "content": "What's the weather in Paris?"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]

failures: list[str] = []


def check(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Runs the decorated function as one named check, recording failures."""

    def run(test: Callable[[], None]) -> Callable[[], None]:
        try:
            test()
        except Exception:  # noqa: BLE001 - every failure is reported, not raised
            failures.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            print(f"ok   {name}", flush=True)
        return test

    return run


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def expect_raises(kind: type[BaseException], call: Callable[[], object]) -> BaseException:
    try:
        result = call()
    except kind as error:
        return error
    except Exception as error:
        raise AssertionError(
            f"expected {kind.__module__}.{kind.__qualname__}, got "
            f"{type(error).__module__}.{type(error).__qualname__}: {error}"
        ) from error
    raise AssertionError(f"expected {kind.__qualname__}, but the call returned {result!r}")


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


client = anthropic.Anthropic(max_retries=0, timeout=30.0, auth_token=None)
print(
    f"anthropic {anthropic.__version__} against {client.base_url} "
    f"({UPSTREAM} upstream, model {MODEL})",
    flush=True,
)

whole: dict[str, object] = {}


@check("messages.create returns a message with text and usage")
def non_streaming() -> None:
    message = client.messages.create(model=MODEL, max_tokens=256, system="Be brief.", messages=PROMPT)
    expect(message.type == "message", f"type {message.type!r}")
    expect(message.role == "assistant", f"role {message.role!r}")
    expect(message.stop_reason == "end_turn", f"stop_reason {message.stop_reason!r}")
    text = text_of(message)
    expect(text.strip() != "", f"text {text!r}")
    expect(message.usage.input_tokens > 0, f"usage {message.usage}")
    expect(message.usage.output_tokens > 0, f"usage {message.usage}")
    expect(message._request_id is not None, "no request id")
    whole["text"] = text
    whole["usage"] = message.usage


@check("messages.stream streams the same text and ends with the same usage")
def streaming() -> None:
    expect("text" in whole, "the non-streaming check failed; nothing to compare with")
    with client.messages.stream(
        model=MODEL, max_tokens=256, system="Be brief.", messages=PROMPT
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expect(text == whole["text"], f"streamed {text!r} != {whole['text']!r}")
    expect(text_of(final) == text, f"final message text {text_of(final)!r}")
    usage = whole["usage"]
    expect(
        (final.usage.input_tokens, final.usage.output_tokens)
        == (usage.input_tokens, usage.output_tokens),  # type: ignore[attr-defined]
        f"streamed usage {final.usage} != {usage}",
    )
    expect(final.stop_reason == "end_turn", f"stop_reason {final.stop_reason!r}")


@check("the raw stream is Anthropic's event sequence")
def raw_events() -> None:
    stream = client.messages.create(model=MODEL, max_tokens=256, messages=PROMPT, stream=True)
    kinds = [event.type for event in stream]
    expect(kinds[0] == "message_start", f"events {kinds}")
    expect(kinds[-2:] == ["message_delta", "message_stop"], f"events {kinds}")
    body = kinds[1:-2]
    expect(body[0] == "content_block_start" and body[-1] == "content_block_stop", f"events {kinds}")
    expect(set(body) == {"content_block_start", "content_block_delta", "content_block_stop"}, f"{kinds}")


@check("tool use: JSON, streamed, and the tool result's answer")
def tool_use() -> None:
    message = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=WEATHER)
    expect(message.stop_reason == "tool_use", f"stop_reason {message.stop_reason!r}")
    calls = [block for block in message.content if block.type == "tool_use"]
    expect(len(calls) == 1, f"content {message.content}")
    call = calls[0]
    expect(call.name == "get_weather", f"name {call.name!r}")
    expect(call.input == {"city": "Paris"}, f"input {call.input!r}")
    expect(call.id != "", "no tool use id")

    with client.messages.stream(model=MODEL, max_tokens=256, tools=TOOLS, messages=WEATHER) as stream:
        final = stream.get_final_message()
    streamed = [block for block in final.content if block.type == "tool_use"]
    expect(len(streamed) == 1 and streamed[0].input == {"city": "Paris"}, f"{final.content}")
    expect(final.stop_reason == "tool_use", f"stop_reason {final.stop_reason!r}")

    answer = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=TOOLS,
        messages=[
            *WEATHER,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18°C, sunny"}],
            },
        ],
    )
    expect(answer.stop_reason == "end_turn", f"stop_reason {answer.stop_reason!r}")
    expect(text_of(answer) != "", "no text after the tool result")


@check("thinking comes first, JSON and streamed")
def thinking() -> None:
    message = client.messages.create(
        model=REASONER,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=PROMPT,
    )
    kinds = [block.type for block in message.content]
    expect(kinds == ["thinking", "text"], f"blocks {kinds}")
    thought = message.content[0]
    expect(thought.thinking.strip() != "", f"thinking {thought.thinking!r}")
    expect(bool(thought.signature) == SIGNED, f"signature {thought.signature!r}")

    with client.messages.stream(
        model=REASONER,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=PROMPT,
    ) as stream:
        thinking_text = "".join(
            event.thinking for event in stream if event.type == "thinking"
        )
        final = stream.get_final_message()
    expect(thinking_text == thought.thinking, f"streamed thinking {thinking_text!r}")
    expect([block.type for block in final.content] == ["thinking", "text"], f"{final.content}")
    expect(text_of(final) == text_of(message), "streamed text differs")


@check("count_tokens counts the prompt")
def count_tokens() -> None:
    counted = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=PROMPT)
    expect(counted.input_tokens > 0, f"input_tokens {counted.input_tokens}")


@check("models.list and models.retrieve know the model")
def models() -> None:
    ids = [model.id for model in client.models.list()]
    expect(MODEL in ids, f"models {ids}")
    model = client.models.retrieve(MODEL)
    expect(model.id == MODEL and model.type == "model", f"model {model}")


@check("a wrong API key raises AuthenticationError (401)")
def wrong_key() -> None:
    intruder = anthropic.Anthropic(
        api_key="sk-llmgw-wrong-0000000000000000", max_retries=0, timeout=30.0, auth_token=None
    )
    error = expect_raises(
        anthropic.AuthenticationError,
        lambda: intruder.messages.create(model=MODEL, max_tokens=16, messages=PROMPT),
    )
    assert isinstance(error, anthropic.AuthenticationError)
    expect(error.body["error"]["type"] == "authentication_error", f"body {error.body!r}")  # type: ignore[index]


@check("an unknown model raises NotFoundError (404)")
def unknown_model() -> None:
    error = expect_raises(
        anthropic.NotFoundError,
        lambda: client.messages.create(model="no-such-model", max_tokens=16, messages=PROMPT),
    )
    assert isinstance(error, anthropic.NotFoundError)
    expect(error.body["error"]["type"] == "not_found_error", f"body {error.body!r}")  # type: ignore[index]


@check("a bad request raises BadRequestError (400)")
def bad_request() -> None:
    error = expect_raises(
        anthropic.BadRequestError,
        # Anthropic's range is 0..1 (the SDK no longer takes the argument).
        lambda: client.messages.create(
            model=MODEL, max_tokens=16, messages=PROMPT, extra_body={"temperature": 1.5}
        ),
    )
    assert isinstance(error, anthropic.BadRequestError)
    expect(error.body["error"]["type"] == "invalid_request_error", f"body {error.body!r}")  # type: ignore[index]
    embeddings_only = expect_raises(
        anthropic.BadRequestError,
        lambda: client.messages.create(model="embed", max_tokens=16, messages=PROMPT),
    )
    expect("Messages API" in str(embeddings_only), f"{embeddings_only}")


@check("an upstream 429 raises RateLimitError")
def rate_limited() -> None:
    error = expect_raises(
        anthropic.RateLimitError,
        lambda: client.messages.create(model=MODEL_429, max_tokens=16, messages=PROMPT),
    )
    assert isinstance(error, anthropic.RateLimitError)
    expect(error.response.headers.get("retry-after") is not None, "no retry-after")


@check("an upstream failure raises InternalServerError (500 api_error)")
def upstream_failed() -> None:
    error = expect_raises(
        anthropic.InternalServerError,
        lambda: client.messages.create(model=MODEL_500, max_tokens=16, messages=PROMPT),
    )
    assert isinstance(error, anthropic.InternalServerError)
    expect(error.status_code == 500, f"status {error.status_code}")
    expect(error.body["error"]["type"] == "api_error", f"body {error.body!r}")  # type: ignore[index]


@check("a stream cut mid-way raises the gateway's error event")
def cut_stream() -> None:
    received: list[str] = []

    def drain() -> None:
        with client.messages.stream(model=MODEL_CUT, max_tokens=256, messages=PROMPT) as stream:
            for text in stream.text_stream:
                received.append(text)

    error = expect_raises(anthropic.APIStatusError, drain)
    expect("".join(received) != "", "no text arrived before the error")
    expect(
        isinstance(error.body, dict) and error.body.get("error", {}).get("type") == "api_error",
        f"error event body: {error.body!r}",
    )


if failures:
    print(f"\n{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr, flush=True)
    sys.exit(1)
print(f"\nall Anthropic SDK checks passed ({UPSTREAM} upstream)", flush=True)
