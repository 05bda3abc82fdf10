"""The official OpenAI Python SDK against an llmgw whose answer policy blocks
a term: streamed and non-streamed answers end with finish_reason
"content_filter", cut before the term.

Run by the `answer_policy::openai_python_sdk_sees_content_filter` e2e test,
or by hand against an llmgw whose model `OPENAI_MODEL` (default `mock`) is
backed by the mock upstream and whose policy blocks `BLOCKED_TERM`
(default 敏感词) in answers:

    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=sk-... \
        python openai_sdk_content_filter.py

Prints one line per check and exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

import openai

MODEL = os.environ.get("OPENAI_MODEL", "mock")
TERM = os.environ.get("BLOCKED_TERM", "敏感词")
PROMPT = [{"role": "user", "content": "Tell me a secret."}]
# The mock upstream answers with these pieces, one streamed chunk each; the
# term is split over two of them.
PIECES = ["Hello ", "before ", TERM[:2], TERM[2:], " after", " and more"]

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


client = openai.OpenAI(max_retries=0, timeout=30.0)
print(f"openai {openai.__version__} against {client.base_url} (model {MODEL})", flush=True)


@check("a streamed answer with the term ends with finish_reason content_filter")
def streamed() -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"mock": {"content": PIECES}},
    )
    content = ""
    reasons = []
    usage = None
    for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            if choice.finish_reason is not None:
                reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    expect(reasons == ["content_filter"], f"finish reasons {reasons!r}")
    expect(content == "Hello before ", f"content {content!r}")
    expect(TERM not in content, "the term reached the client")
    expect(usage is not None and usage.completion_tokens > 0, f"usage {usage!r}")


@check("a non-streamed answer with the term is cut with finish_reason content_filter")
def non_streamed() -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=PROMPT, extra_body={"mock": {"content": PIECES}}
    )
    choice = completion.choices[0]
    expect(choice.finish_reason == "content_filter", f"finish_reason {choice.finish_reason!r}")
    expect(choice.message.content == "Hello before ", f"content {choice.message.content!r}")
    expect(completion.usage is not None and completion.usage.completion_tokens == len(PIECES),
           f"usage {completion.usage!r}")


@check("an answer without the term is untouched")
def clean() -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=PROMPT, extra_body={"mock": {"content": ["all ", "fine"]}}
    )
    choice = completion.choices[0]
    expect(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason!r}")
    expect(choice.message.content == "all fine", f"content {choice.message.content!r}")


if failures:
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}", flush=True)
    sys.exit(1)
print("all checks passed", flush=True)
