"""The content policy as the official OpenAI Python SDK sees it.

Run by the `process::policy_sdk` e2e test against `llmgw all` whose
default policy blocks the term `forbidden-term` (rule `banned-words`) and
redacts `Project Falcon` (rule `confidential-projects`):

    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=sk-... \
        python openai_sdk_policy.py

Prints one line per check and exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

import openai

MODEL = os.environ.get("OPENAI_MODEL", "mock")

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


def expect_bad_request(call: Callable[[], object]) -> openai.BadRequestError:
    try:
        result = call()
    except openai.BadRequestError as error:
        return error
    except Exception as error:
        raise AssertionError(
            f"expected openai.BadRequestError, got {type(error).__qualname__}: {error}"
        ) from error
    raise AssertionError(f"expected openai.BadRequestError, but the call returned {result!r}")


client = openai.OpenAI(max_retries=0, timeout=30.0)
print(f"openai {openai.__version__} against {client.base_url} (model {MODEL})", flush=True)


def assert_policy_violation(error: openai.BadRequestError) -> None:
    expect(error.status_code == 400, f"status {error.status_code}")
    expect(error.code == "content_policy_violation", f"code {error.code!r}")
    expect(error.type == "invalid_request_error", f"type {error.type!r}")
    expect("banned-words" in error.message, f"message {error.message!r}")
    expect("forbidden-term" not in str(error), f"the term was echoed: {error}")


@check("a blocked prompt raises BadRequestError with code content_policy_violation")
def blocked() -> None:
    error = expect_bad_request(
        lambda: client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "say forbidden-term"}]
        )
    )
    assert_policy_violation(error)


@check("a blocked streaming prompt raises BadRequestError before any chunk")
def blocked_stream() -> None:
    def call() -> object:
        return list(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "stream forbidden-term"}],
                stream=True,
            )
        )

    assert_policy_violation(expect_bad_request(call))


@check("a redacted prompt is answered normally")
def redacted() -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "status of Project Falcon?"}]
    )
    choice = completion.choices[0]
    expect(choice.finish_reason == "stop", f"finish_reason is {choice.finish_reason!r}")
    expect(bool(choice.message.content), f"content is {choice.message.content!r}")


if failures:
    print(f"\n{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr, flush=True)
    sys.exit(1)
print("\nall OpenAI SDK policy checks passed", flush=True)
