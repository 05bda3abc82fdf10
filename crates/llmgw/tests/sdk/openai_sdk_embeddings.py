"""Embeddings through a running llmgw with the official OpenAI Python SDK.

Run by the `process::protocols_sdk` e2e test, or by hand against any llmgw
with an embeddings alias backed by the mock upstream:

    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=sk-... \
        OPENAI_MODEL=embed python openai_sdk_embeddings.py

The mock's vectors have unit length and depend on the input alone; its
usage counts ceil(characters / 4) tokens per input. Prints one line per
check and exits non-zero if any check fails.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import sys
import traceback
from typing import Callable

import openai

MODEL = os.environ.get("OPENAI_MODEL", "embed")
INPUTS = ["The quick brown fox", "jumps over the lazy dog"]

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

vectors: dict[str, list[list[float]]] = {}


@check("float embeddings: one unit vector per input, usage of the input only")
def floats() -> None:
    answer = client.embeddings.create(model=MODEL, input=INPUTS, encoding_format="float")
    expect(answer.object == "list", f"object {answer.object!r}")
    expect([item.index for item in answer.data] == [0, 1], f"data {answer.data!r}")
    for item in answer.data:
        expect(len(item.embedding) == 16, f"dimensions {len(item.embedding)}")
        norm = math.sqrt(sum(value * value for value in item.embedding))
        expect(abs(norm - 1.0) < 1e-4, f"norm {norm}")
    expect(answer.data[0].embedding != answer.data[1].embedding, "the same vector twice")
    expected = sum(-(-len(text) // 4) for text in INPUTS)
    expect(answer.usage.prompt_tokens == expected, f"usage {answer.usage}")
    expect(answer.usage.total_tokens == expected, f"usage {answer.usage}")
    vectors["float"] = [item.embedding for item in answer.data]


@check("the SDK's default (base64 on the wire, decoded) gives the same vectors")
def sdk_default() -> None:
    expect("float" in vectors, "the float check failed; nothing to compare with")
    answer = client.embeddings.create(model=MODEL, input=INPUTS)
    for got, want in zip((item.embedding for item in answer.data), vectors["float"]):
        expect(len(got) == len(want), f"{len(got)} != {len(want)}")
        expect(all(abs(a - b) < 1e-6 for a, b in zip(got, want)), f"{got} != {want}")


@check("base64 asked for explicitly: little-endian float32s")
def explicit_base64() -> None:
    expect("float" in vectors, "the float check failed; nothing to compare with")
    answer = client.embeddings.create(model=MODEL, input=INPUTS[0], encoding_format="base64")
    encoded = answer.data[0].embedding
    expect(isinstance(encoded, str), f"expected a base64 string, got {type(encoded)}")
    raw = base64.b64decode(encoded)
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    want = vectors["float"][0]
    expect(all(abs(a - b) < 1e-6 for a, b in zip(decoded, want)), f"{decoded} != {want}")


@check("dimensions is passed on")
def dimensions() -> None:
    answer = client.embeddings.create(model=MODEL, input="hello", dimensions=8, encoding_format="float")
    expect(len(answer.data[0].embedding) == 8, f"dimensions {len(answer.data[0].embedding)}")


@check("a chat model raises BadRequestError for embeddings")
def not_an_embeddings_model() -> None:
    try:
        client.embeddings.create(model="model", input="hello")
    except openai.BadRequestError as error:
        expect(error.status_code == 400, f"status {error.status_code}")
        expect("does not serve embeddings" in str(error), f"{error}")
    else:
        raise AssertionError("expected BadRequestError")


if failures:
    print(f"\n{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr, flush=True)
    sys.exit(1)
print("\nall OpenAI SDK embeddings checks passed", flush=True)
