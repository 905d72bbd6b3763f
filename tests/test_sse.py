"""connector.endpoint.sse.SSEParser: events come out the same whatever the network chunking."""

from __future__ import annotations

import json

import pytest

from connector.endpoint.sse import SSEEvent, SSEParser


def parse(chunks: list[bytes], close: bool = True) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    if close:
        events.extend(parser.close())
    return events


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    return json.dumps(
        {"id": "c1", "object": "chat.completion.chunk", "model": "m",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra},
        ensure_ascii=False,
    )


# A realistic OpenAI stream, with multi-byte UTF-8 (2-byte é, 4-byte 👍) in the deltas.
PAYLOADS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Café "}),
    _chunk({"content": "👍 très"}),
    _chunk({"content": " bien"}),
    _chunk({}, "stop"),
    json.dumps({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}}),
    "[DONE]",
]


def stream_bytes(eol: str) -> bytes:
    return "".join(f"data: {p}{eol}{eol}" for p in PAYLOADS).encode()


EXPECTED = [SSEEvent(p) for p in PAYLOADS]
CRLF_STREAM = stream_bytes("\r\n")


def test_stream_has_multibyte_characters() -> None:
    # Guard: the split tests below are only meaningful if some splits land inside a character.
    assert "é".encode() in CRLF_STREAM and "👍".encode() in CRLF_STREAM
    assert len("👍".encode()) == 4


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_whole_stream_in_one_chunk(eol: str) -> None:
    assert parse([stream_bytes(eol)]) == EXPECTED


def test_crlf_stream_split_at_every_offset() -> None:
    for split in range(len(CRLF_STREAM) + 1):  # one loop: ~870 offsets, one test
        events = parse([CRLF_STREAM[:split], CRLF_STREAM[split:]])
        assert events == EXPECTED, f"split at {split}"
        assert "👍 très" in json.loads(events[2].data)["choices"][0]["delta"]["content"]


@pytest.mark.parametrize("eol", ["\n", "\r"], ids=["LF", "CR"])
def test_other_line_endings_split_at_every_offset(eol: str) -> None:
    data = stream_bytes(eol)
    for split in range(len(data) + 1):
        assert parse([data[:split], data[split:]]) == EXPECTED, f"split at {split}"


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_one_byte_at_a_time(eol: str) -> None:
    data = stream_bytes(eol)
    assert parse([data[i:i + 1] for i in range(len(data))]) == EXPECTED


def test_events_are_dispatched_as_soon_as_complete_not_at_close() -> None:
    parser = SSEParser()
    first = list(parser.feed(b"data: one\n\ndata: tw"))
    assert first == [SSEEvent("one")]
    assert list(parser.feed(b"o\n")) == []
    assert list(parser.feed(b"\n")) == [SSEEvent("two")]
    assert list(parser.close()) == []


def test_cr_at_end_of_chunk_and_lf_at_start_of_next_is_one_line_end() -> None:
    # If the \n after a split \r\n were taken as a blank line, "a" and "b" would be two events.
    events = parse([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [SSEEvent("a\nb")]


def test_cr_then_empty_read_then_lf_is_still_one_line_end() -> None:
    # An empty read (or half a UTF-8 character) between the \r and the \n must not
    # make the parser forget that a \n may follow.
    events = parse([b"data: a\r", b"", b"\ndata: b\r\n\r\n"])
    assert events == [SSEEvent("a\nb")]


def test_cr_then_partial_utf8_then_rest() -> None:
    events = parse([b"data: a\r", "é".encode()[:1], "é".encode()[1:] + b": x\r\n\r\n"])
    # "é: x" is an unknown field, ignored; the event holds only "a".
    assert events == [SSEEvent("a")]


def test_lone_cr_followed_by_a_real_blank_line() -> None:
    # The first \n pairs with the \r before it; the second \n is the blank line.
    assert parse([b"data: a\r", b"\n", b"\n"]) == [SSEEvent("a")]
    assert parse([b"data: a\r", b"\r"]) == [SSEEvent("a")]


def test_mixed_line_endings() -> None:
    assert parse([b"data: a\r\ndata: b\ndata: c\r\r\ndata: d\n\n"]) == [
        SSEEvent("a\nb\nc"), SSEEvent("d")]


def test_multi_line_data_is_joined_with_newline() -> None:
    assert parse([b"data: line one\ndata: line two\ndata:\ndata: four\n\n"]) == [
        SSEEvent("line one\nline two\n\nfour")]


def test_only_one_leading_space_is_stripped() -> None:
    assert parse([b"data:  two spaces\ndata:none\n\n"]) == [SSEEvent(" two spaces\nnone")]


def test_field_without_colon_is_a_field_with_empty_value() -> None:
    assert parse([b"data\ndata\n\n"]) == [SSEEvent("\n")]


def test_comments_are_ignored_including_keepalives() -> None:
    events = parse([b": keep-alive\n\n: ping\ndata: x\n: in the middle\ndata: y\n\n"])
    assert events == [SSEEvent("x\ny")]


def test_event_field_names_the_event_and_resets_after_dispatch() -> None:
    events = parse([b"event: error\ndata: {\"error\": 1}\n\ndata: plain\n\n"])
    assert events == [SSEEvent('{"error": 1}', "error"), SSEEvent("plain", "message")]


def test_event_without_data_is_not_dispatched_and_type_does_not_leak() -> None:
    events = parse([b"event: ping\n\ndata: after\n\n"])
    assert events == [SSEEvent("after", "message")]


def test_unknown_fields_id_and_retry_are_ignored() -> None:
    assert parse([b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n"]) == [SSEEvent("x")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse([b"\n\n\r\n\r\r\n"]) == []


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_unicode_line_separators_inside_json_do_not_split_lines(sep: str) -> None:
    payload = json.dumps({"content": f"before{sep}after"}, ensure_ascii=False)
    assert sep in payload
    data = f"data: {payload}\n\n".encode()
    for split in range(len(data) + 1):
        events = parse([data[:split], data[split:]])
        assert events == [SSEEvent(payload)], f"split at {split}"
        assert json.loads(events[0].data)["content"] == f"before{sep}after"


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_str_splitlines_separators_in_raw_data_do_not_split_lines(sep: str) -> None:
    # str.splitlines() would split on every one of these; only CR, LF and CRLF end an SSE line.
    assert len(f"a{sep}b".splitlines()) == 2
    assert parse([f"data: a{sep}b\n\n".encode()]) == [SSEEvent(f"a{sep}b")]


def test_close_flushes_final_event_without_trailing_blank_line() -> None:
    parser = SSEParser()
    assert list(parser.feed(b"data: first\n\ndata: last")) == [SSEEvent("first")]
    assert list(parser.close()) == [SSEEvent("last")]


def test_close_flushes_event_whose_last_line_was_terminated() -> None:
    parser = SSEParser()
    assert list(parser.feed(b"event: done\ndata: [DONE]\n")) == []
    assert list(parser.close()) == [SSEEvent("[DONE]", "done")]


def test_close_with_nothing_pending_yields_nothing() -> None:
    parser = SSEParser()
    assert list(parser.feed(b"data: x\n\n")) == [SSEEvent("x")]
    assert list(parser.close()) == []
    assert list(SSEParser().close()) == []


def test_close_ignores_a_trailing_comment() -> None:
    assert parse([b"data: x\n\n: bye"]) == [SSEEvent("x")]


def test_truncated_utf8_at_close_is_replaced_not_raised() -> None:
    events = parse([b"data: ok\n\ndata: caf\xc3"])
    assert events == [SSEEvent("ok"), SSEEvent("caf\ufffd")]


def test_invalid_utf8_mid_stream_is_replaced() -> None:
    assert parse([b"data: a\xffb\n\n"]) == [SSEEvent("a\ufffdb")]


@pytest.mark.parametrize("chunk_size", [1024, 65536])
def test_one_huge_event_is_parsed_in_linear_work(chunk_size: int) -> None:
    """An 8 MB event read in small pieces: each character is copied into a line at most twice
    (joining the unfinished line to every read copied it once per read: quadratic)."""
    content = "x" * (8 * 1024 * 1024)
    raw = f"data: {json.dumps({'choices': [{'delta': {'content': content}}]})}\n\n".encode()
    parser = SSEParser()
    events = [e for i in range(0, len(raw), chunk_size) for e in parser.feed(raw[i:i + chunk_size])]
    assert len(events) == 1 and json.loads(events[0].data)["choices"][0]["delta"]["content"] == content
    assert parser.copied <= 2 * len(raw)


def test_many_small_events_are_copied_once_each() -> None:
    raw = b"".join(f"data: {i}\r\n\r\n".encode() for i in range(10_000))
    parser = SSEParser()
    events = [e for i in range(0, len(raw), 7) for e in parser.feed(raw[i:i + 7])]
    assert [e.data for e in events] == [str(i) for i in range(10_000)]
    assert parser.copied <= 2 * len(raw)
