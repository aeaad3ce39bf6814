"""`polyepo serve` against the official OpenAI Python client (a client the project did not
write): the fields RL engines and judges send, and the shapes the client parses."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0)


def test_chat_with_logprobs_and_max_completion_tokens(client):
    r = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Count: 1, 2,"}]}],
        max_completion_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    choice = r.choices[0]
    assert r.id.startswith("chatcmpl-") and r.usage.completion_tokens <= 6
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    assert all(len(e.top_logprobs) == 2 and e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob for e in entries)
    again = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert again.id != r.id


def test_streaming_sends_the_role_first_and_the_usage_last(client):
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0
    )
    assert text == whole.choices[0].message.content


def test_response_format_json_schema_gives_parseable_json(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is 2+3? Reply in JSON."}],
        max_tokens=30,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
    )
    assert isinstance(json.loads(r.choices[0].message.content)["answer"], int)


def test_completions_take_a_list_of_prompts(client):
    r = client.completions.create(model="smollm2", prompt=["1, 2, 3,", "a, b, c,"], max_tokens=3, temperature=0, logprobs=1)
    assert len(r.choices) == 2 and r.choices[0].text != r.choices[1].text
    assert len(r.choices[0].logprobs.tokens) == 3


def test_errors_are_typed_exceptions_with_param_and_code(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found" and e.value.param == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2", messages=[{"role": "wizard", "content": "hi"}])
    assert e.value.param == "messages[0].role"
