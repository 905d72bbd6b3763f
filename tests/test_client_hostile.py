"""EndpointClient against replies that deviate from the API: over httpx.MockTransport, in-process.

The deadline tests wait for real, briefly (``timeout`` 0.3 s): what they assert is the
outcome (a ``timeout`` after every attempt), and the pytest timeout is only a safety net
far above what a working deadline takes.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connector import errors
from connector.endpoint.classify import classify
from tests.conftest import chat_reply
from tests.test_client import BODY, Recorder, make_client, ok, sse

pytestmark = pytest.mark.timeout(30)

STREAM_BODY = {**BODY, "stream": True}


def trickled(data: bytes, every: float, content_type: str) -> Any:
    """A handler whose body arrives one byte every ``every`` seconds, forever if ``data`` runs out."""
    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for byte in data:
                yield bytes([byte])
                await asyncio.sleep(every)
            while True:
                await asyncio.sleep(every)
                yield b": keep-alive\n\n" if "event-stream" in content_type else b" "

        return httpx.Response(200, headers={"content-type": content_type}, content=body())

    return handler


# timeout bounds the whole attempt ----------------------------------------------------------


async def test_a_json_body_trickled_byte_by_byte_ends_at_the_deadline_as_timeout() -> None:
    rec = Recorder(trickled(json.dumps(chat_reply("slow")).encode(), 0.05, "application/json"))
    client, sleeps = make_client(rec, timeout=0.3, max_retries=1)
    with pytest.raises(errors.ReadTimeout) as info:
        await client.complete(BODY)
    assert classify(info.value) == "timeout"
    assert info.value.attempts == 2 and len(rec.requests) == 2 and len(sleeps.delays) == 1
    assert "did not answer within 0.3 s (timeout: the deadline for the whole answer)" in info.value.message


async def test_a_stream_kept_alive_with_comments_ends_at_the_deadline_as_timeout() -> None:
    first_token = sse({"choices": [{"index": 0, "delta": {"content": "one"}}]})
    rec = Recorder(trickled(first_token, 0.0, "text/event-stream"))
    client, _ = make_client(rec, timeout=0.3, max_retries=1, stream=True)
    with pytest.raises(errors.ReadTimeout) as info:
        await client.complete(STREAM_BODY)
    assert classify(info.value) == "timeout" and info.value.attempts == 2


async def test_the_model_list_has_the_same_deadline() -> None:
    rec = Recorder(trickled(b'{"data": [{"id": "m"}]}', 0.05, "application/json"))
    client, _ = make_client(rec, timeout=0.3)
    with pytest.raises(errors.ReadTimeout):
        await client.list_models()


# A streamed request answered with one JSON body -----------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", ""])
async def test_a_whole_json_answer_to_a_stream_request_is_accepted_once(content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    rec = Recorder(httpx.Response(200, headers=headers, content=json.dumps(chat_reply("whole")).encode()))
    client, _ = make_client(rec, stream=True)
    completion = await client.complete(STREAM_BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "whole"
    assert len(rec.requests) == 1


# Bodies: decoded like the stream path, never retried for their bytes ---------------------


@pytest.mark.parametrize("raw", [
    b'{"choices": [{"message": {"role": "assistant", "content": "caf\xe9 \xff"}, "finish_reason": "stop"}]}',
    b'{"choices": [{"message": {"role": "assistant", "content": "lone \\ud800 half"}, "finish_reason": "stop"}]}',
])
@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_utf8_and_lone_surrogates_decode_with_replacement(raw: bytes, stream: bool) -> None:
    if stream:
        event = raw.replace(b'"message"', b'"delta"')
        answer = httpx.Response(200, headers={"content-type": "text/event-stream"},
                                content=b"data: " + event + b"\n\ndata: [DONE]\n\n")
    else:
        answer = httpx.Response(200, headers={"content-type": "application/json"}, content=raw)
    rec = Recorder(answer)
    client, _ = make_client(rec, stream=stream)
    completion = await client.complete(STREAM_BODY if stream else BODY)
    content = completion.reply["choices"][0]["message"]["content"]
    assert "\ufffd" in content and len(rec.requests) == 1
    content.encode("utf-8")  # no lone surrogate left to break a writer


# Malformed replies are bad_reply, never ok with a wrong type ------------------------------


def reply_with(message: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                     **extra})


@pytest.mark.parametrize(("message", "fragment"), [
    ("a string", "message is a string, not an object"),
    ({"role": "assistant", "content": 42}, "content is a number, not text"),
    ({"role": "assistant", "content": {"text": "x"}}, "content is an object, not text"),
    ({"role": "assistant", "content": [1, 2]}, "neither text nor an object"),
    ({"role": "assistant", "content": "x", "tool_calls": "call"}, "tool_calls is a string"),
])
async def test_a_malformed_reply_is_bad_reply_and_not_bought_again(message: Any, fragment: str) -> None:
    rec = Recorder(reply_with(message))
    client, _ = make_client(rec)
    with pytest.raises(errors.BadReply, match=fragment) as info:
        await client.complete(BODY)
    assert classify(info.value) == "bad_reply"
    assert len(rec.requests) == 1  # the same server would send the same shape again


async def test_content_as_a_list_of_parts_is_the_text_parts_joined() -> None:
    parts = [{"type": "text", "text": "Hello, "}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "world"}]
    rec = Recorder(reply_with({"role": "assistant", "content": parts}))
    client, _ = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "Hello, world"


async def test_streamed_content_parts_are_joined_too() -> None:
    events = sse({"choices": [{"index": 0, "delta": {"content": [{"type": "text", "text": "a"}]}}]},
                 {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]}, b"[DONE]")
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events))
    client, _ = make_client(rec, stream=True)
    completion = await client.complete(STREAM_BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "ab"


async def test_a_stream_of_an_unexpected_shape_is_bad_reply_not_a_crash() -> None:
    events = sse({"choices": [{"index": 0, "delta": "text"}]}, b"[DONE]")
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events))
    client, _ = make_client(rec, stream=True)
    with pytest.raises(errors.BadReply):
        await client.complete(STREAM_BODY)
    assert len(rec.requests) == 1


@pytest.mark.parametrize(("usage", "expected"), [
    ("n/a", None),
    ([1, 2], None),
    ({"prompt_tokens": "5", "completion_tokens": 2}, {"prompt_tokens": 5, "completion_tokens": 2,
                                                      "total_tokens": 7}),
    ({"prompt_tokens": -1, "completion_tokens": 2.0, "total_tokens": "x"},
     {"prompt_tokens": None, "completion_tokens": 2, "total_tokens": None}),
    # Digits str.isdigit() accepts and int() refuses: was a ValueError out of the reply's parsing.
    ({"prompt_tokens": "\u00b2", "completion_tokens": 3, "total_tokens": "\u00b9\u00b2"},
     {"prompt_tokens": None, "completion_tokens": 3, "total_tokens": None}),
])
async def test_usage_is_normalised_not_a_crash(usage: Any, expected: Any) -> None:
    rec = Recorder(reply_with({"role": "assistant", "content": "fine"}, usage=usage))
    client, _ = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "fine"
    assert completion.reply.get("usage") == expected


# Local resources: backpressure, not the endpoint's failure ---------------------------------


async def test_out_of_file_descriptors_is_retried_without_counting_an_attempt() -> None:
    emfile = httpx.ConnectError("cannot connect")
    emfile.__cause__ = OSError(errno.EMFILE, "Too many open files")
    rec = Recorder(emfile, emfile, emfile, ok("after all"))
    client, sleeps = make_client(rec, max_retries=0)
    completion = await client.complete(BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "after all"
    assert completion.attempts == 1 and client.requests_sent == 1
    assert len(sleeps.delays) == 3


async def test_local_resources_that_never_recover_stop_the_sync_resumably() -> None:
    enobufs = httpx.ConnectError("cannot connect")
    enobufs.__context__ = OSError(errno.ENOBUFS, "No buffer space available")
    rec = Recorder(enobufs)
    client, sleeps = make_client(rec, max_wait_seconds=2)
    with pytest.raises(errors.WaitTooLong, match=r"No buffer space available.*ulimit -n"):
        await client.complete(BODY)
    assert 0 < sum(sleeps.delays) <= 2


def test_the_transport_s_socket_errors_are_translated_the_same_way() -> None:
    from connector.endpoint.http_reading import failure

    translated = failure(OSError(errno.EMFILE, "Too many open files"), "http://h:1/v1", connecting=True)
    assert isinstance(translated, errors.LocalResourcesExhausted)
    assert "Too many open files" in translated.message


# Streams that end in an error, or go on after their end, in every API shape ------------------


def _chat_events(text: str) -> list[dict[str, Any]]:
    return [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in (text[:3], text[3:])] + \
        [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


def _responses_events(text: str) -> list[dict[str, Any]]:
    final = {"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text",
                                                                                  "text": text}]}]}
    return [{"type": "response.output_text.delta", "delta": text[:3]},
            {"type": "response.output_text.delta", "delta": text[3:]},
            {"type": "response.completed", "response": final}]


def _anthropic_events(text: str) -> list[dict[str, Any]]:
    return [{"type": "message_start", "message": {"id": "msg", "usage": {"input_tokens": 3}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[:3]}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[3:]}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
            {"type": "message_stop"}]


def _gemini_events(text: str) -> list[dict[str, Any]]:
    return [{"candidates": [{"content": {"parts": [{"text": text[:3]}]}}]},
            {"candidates": [{"content": {"parts": [{"text": text[3:]}]}, "finishReason": "STOP"}]}]


# Per shape: the events of a whole answer, and its end marker when the shape has one.
STREAMS = {
    "openai_chat_completions": (_chat_events, b"data: [DONE]\n\n"),
    "openai_responses": (_responses_events, b""),
    "anthropic_messages": (_anthropic_events, b""),
    "gemini_generate_content": (_gemini_events, b""),
}
# One more piece of text, in each shape's own event.
MORE_TEXT = {
    "openai_chat_completions": {"choices": [{"index": 0, "delta": {"content": " EXTRA"}}]},
    "openai_responses": {"type": "response.output_text.delta", "delta": " EXTRA"},
    "anthropic_messages": {"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": " EXTRA"}},
    "gemini_generate_content": {"candidates": [{"content": {"parts": [{"text": " EXTRA"}]}}]},
}


def _streamed(*pieces: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(pieces))


def _events(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


@pytest.mark.parametrize("shape", list(STREAMS))
@pytest.mark.parametrize("error", [
    b'event: error\ndata: {"message": "upstream overloaded"}\n\n',  # the SSE event type says it
    b'data: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n',  # an error object
])
async def test_a_stream_that_reports_an_error_midway_is_not_an_answer(shape: str, error: bytes) -> None:
    """Before: the partial text before the error became an ok answer in every shape but chat."""
    events, end = STREAMS[shape]
    whole = events("partial answer")
    rec = Recorder(_streamed(_events(whole[:2]), error, _events(whole[2:]), end))
    client, _ = make_client(rec, api_compatibility=shape, stream=True, max_retries=0)
    with pytest.raises(errors.BadReply, match="error mid-stream: upstream overloaded"):
        await client.complete(STREAM_BODY)


@pytest.mark.parametrize("shape", list(STREAMS))
async def test_data_after_the_end_of_a_stream_is_not_appended(shape: str) -> None:
    """Before: text after [DONE], message_stop, response.completed or finishReason joined the answer."""
    events, end = STREAMS[shape]
    after = _events([MORE_TEXT[shape]])
    if end or shape != "gemini_generate_content":  # Gemini has no end marker: an error after is an error
        after += b'event: error\ndata: {"message": "late"}\n\n'
    rec = Recorder(_streamed(_events(events("whole answer")), end, after))
    client, _ = make_client(rec, api_compatibility=shape, stream=True)
    completion = await client.complete(STREAM_BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "whole answer"


async def test_a_content_length_of_digits_int_refuses_is_read_as_unannounced() -> None:
    from connector.endpoint.transport import Response

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"ok": true}'

    # "²" passes str.isdigit(): the announced size was int("²"), a ValueError out of the reply's read.
    reply = Response(200, {"content-length": "\u00b2"}, chunks())
    assert await reply.read(limit=1024) == b'{"ok": true}'
