"""Drives a running llmgw with the official OpenAI Python SDK.

Run by the `process::openai_python_sdk_streaming_json_and_errors` e2e test,
or by hand against any llmgw whose model is backed by the mock upstream:

    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=sk-... \
        python openai_sdk.py

Environment: OPENAI_BASE_URL and OPENAI_API_KEY (read by the SDK itself),
OPENAI_MODEL (default `mock`): a model served by llmgw's mock upstream,
which answers deterministically and obeys the `mock` body field.

Prints one line per check and exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

import openai

MODEL = os.environ.get("OPENAI_MODEL", "mock")
PROMPT = [{"role": "user", "content": "Tell me about foxes."}]

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


client = openai.OpenAI(max_retries=0, timeout=30.0)
print(f"openai {openai.__version__} against {client.base_url} (model {MODEL})", flush=True)

non_streamed: dict[str, object] = {}


@check("non-streaming call returns content and usage")
def non_streaming() -> None:
    completion = client.chat.completions.create(model=MODEL, messages=PROMPT)
    expect(completion.object == "chat.completion", f"object is {completion.object!r}")
    expect(len(completion.choices) == 1, f"choices: {completion.choices!r}")
    choice = completion.choices[0]
    content = choice.message.content
    expect(isinstance(content, str) and content.strip() != "", f"content is {content!r}")
    expect(choice.message.role == "assistant", f"role is {choice.message.role!r}")
    expect(choice.finish_reason == "stop", f"finish_reason is {choice.finish_reason!r}")
    usage = completion.usage
    expect(usage is not None, "no usage")
    assert usage is not None
    expect(usage.prompt_tokens > 0, f"prompt_tokens is {usage.prompt_tokens}")
    expect(usage.completion_tokens > 0, f"completion_tokens is {usage.completion_tokens}")
    expect(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"total_tokens {usage.total_tokens} != prompt + completion ({usage})",
    )
    non_streamed["content"] = content
    non_streamed["usage"] = usage


@check("streaming call (include_usage) streams the same text and ends with usage")
def streaming() -> None:
    expect("content" in non_streamed, "the non-streaming check failed; nothing to compare with")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    expect(len(chunks) >= 3, f"only {len(chunks)} chunks")
    for chunk in chunks:
        expect(chunk.object == "chat.completion.chunk", f"chunk object is {chunk.object!r}")
    text = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    expect(
        text == non_streamed["content"],
        f"streamed text {text!r} != non-streamed {non_streamed['content']!r}",
    )
    finish = [choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.finish_reason]
    expect(finish == ["stop"], f"finish reasons: {finish!r}")
    last = chunks[-1]
    expect(last.choices == [], f"last chunk has choices: {last.choices!r}")
    expect(last.usage is not None, "last chunk has no usage")
    assert last.usage is not None
    for chunk in chunks[:-1]:
        expect(chunk.usage is None, f"usage before the last chunk: {chunk!r}")
    usage = non_streamed["usage"]
    expect(
        (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens)
        == (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),  # type: ignore[attr-defined]
        f"streamed usage {last.usage} != non-streamed usage {usage}",
    )


@check("a wrong API key raises AuthenticationError (401)")
def wrong_key() -> None:
    intruder = openai.OpenAI(api_key="sk-llmgw-wrong-0000000000000000", max_retries=0, timeout=30.0)
    error = expect_raises(
        openai.AuthenticationError,
        lambda: intruder.chat.completions.create(model=MODEL, messages=PROMPT),
    )
    assert isinstance(error, openai.AuthenticationError)
    expect(error.status_code == 401, f"status {error.status_code}")
    expect(error.code == "invalid_api_key", f"code {error.code!r}")


@check("an unknown model raises NotFoundError (404)")
def unknown_model() -> None:
    error = expect_raises(
        openai.NotFoundError,
        lambda: client.chat.completions.create(model="no-such-model", messages=PROMPT),
    )
    assert isinstance(error, openai.NotFoundError)
    expect(error.status_code == 404, f"status {error.status_code}")
    expect(error.code == "model_not_found", f"code {error.code!r}")


@check("an upstream 429 raises RateLimitError")
def upstream_rate_limited() -> None:
    error = expect_raises(
        openai.RateLimitError,
        lambda: client.chat.completions.create(
            model=MODEL, messages=PROMPT, extra_body={"mock": {"fault": "429"}}
        ),
    )
    assert isinstance(error, openai.RateLimitError)
    expect(error.status_code == 429, f"status {error.status_code}")


@check("an upstream 500 raises APIStatusError with status 502")
def upstream_server_error() -> None:
    error = expect_raises(
        openai.APIStatusError,
        lambda: client.chat.completions.create(
            model=MODEL, messages=PROMPT, extra_body={"mock": {"fault": "500"}}
        ),
    )
    assert isinstance(error, openai.APIStatusError)
    expect(error.status_code == 502, f"status {error.status_code}")


@check("a stream cut mid-way raises APIError while iterating")
def truncated_stream() -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        stream=True,
        extra_body={"mock": {"fault": "truncate", "chunks": 6}},
    )
    received: list[str] = []

    def drain() -> None:
        for chunk in stream:
            for choice in chunk.choices:
                received.append(choice.delta.content or "")

    error = expect_raises(openai.APIError, drain)
    expect("".join(received) != "", "no content arrived before the error")
    # The gateway's final error event, not a broken connection or a status.
    expect(
        not isinstance(error, (openai.APIStatusError, openai.APIConnectionError)),
        f"expected the gateway's in-stream error event, got {type(error).__name__}: {error!r}",
    )
    expect(
        isinstance(error.body, dict) and error.body.get("code") == "upstream_error",
        f"error event body: {error.body!r}",
    )


if failures:
    print(f"\n{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr, flush=True)
    sys.exit(1)
print("\nall OpenAI SDK checks passed", flush=True)
