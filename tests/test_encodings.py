"""input.encoding: bytes that are not text in it stop the run before any request, named by file, line and byte.

Never base64 prompts, never a half-paid read.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from connector.config.load import load_config
from connector.errors import ConfigError, InputError
from connector.standalone.command import run
from tests.echo_endpoint import Echo, check, config, discover, read, records, write

LATIN1 = b"id,text\n1,plain\n2,caf\xe9 au lait\n"


async def test_a_latin1_byte_in_a_utf8_csv_is_named_by_check_discover_and_read_before_any_request(
        tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.csv", LATIN1)
    raw = config({"path": str(path)}, "Translate: {{text}}")
    echo = Echo()
    status = await check(raw, echo)
    assert status["status"] == "FAILED"
    message = status["message"]
    assert f"{path} line 3 (byte offset 21) holds 0xE9, which is not utf-8 text" in message
    assert "set input.encoding to latin-1" in message
    with pytest.raises(InputError, match=r"line 3 \(byte offset 21\)"):
        await discover(raw, echo)
    with pytest.raises(InputError, match=r"line 3 \(byte offset 21\)"):
        await read(raw, echo)
    with pytest.raises(InputError, match=r"line 3 \(byte offset 21\)"):
        await run(raw, str(tmp_path / "out.parquet"), transport_factory=echo.factory())
    assert echo.bodies == [] and not (tmp_path / "out.parquet").exists()


async def test_with_input_encoding_latin1_the_text_is_sent_as_written(tmp_path: Path) -> None:
    raw = config({"path": str(write(tmp_path / "latin1.csv", LATIN1)), "encoding": "latin-1"}, "Translate: {{text}}")
    echo = Echo()
    out = records(await read(raw, echo))
    assert echo.prompts == ["Translate: plain", "Translate: café au lait"]
    assert out[1]["text"] == "café au lait"
    assert (await discover(raw, Echo()))["text"] == {"type": ["null", "string"]}


async def test_a_bad_byte_far_past_the_first_block_still_stops_the_read_before_any_request(tmp_path: Path) -> None:
    rows = b"".join(b"%d,row number %d of plain ascii text\n" % (i, i) for i in range(100_000))  # ~4 MB
    path = write(tmp_path / "late.csv", b"id,text\n" + rows + b"100000,na\xefve\n")
    echo = Echo()
    with pytest.raises(InputError, match=r"late.csv line 100002 \(byte offset \d+\) holds 0xEF, which is not "
                                         r"utf-8 text: …100000,na\\xefve…"):
        await read(config({"path": str(path)}, "{{text}}"), echo)
    assert echo.bodies == []


async def test_a_latin1_jsonl_line_is_named_and_readable_with_the_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", b'{"text": "plain"}\n{"text": "caf\xe9"}\n')
    echo = Echo()
    with pytest.raises(InputError, match=r"t.jsonl line 2 \(byte offset 31\) holds 0xE9, which is not utf-8"):
        await discover(config({"path": str(path)}, "{{text}}"), echo)
    out = records(await read(config({"path": str(path), "encoding": "latin-1"}, "T: {{text}}"), echo))
    assert out[1]["text"] == "café" and echo.prompts == ["T: plain", "T: café"]


async def test_a_utf16_file_is_named_as_such_and_read_with_the_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "u16.csv", "id,text\n1,Grüße\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"UTF-16 byte order mark: set input\.encoding to utf-16"):
        await discover(config({"path": str(path)}, "{{text}}"), Echo())
    echo = Echo()
    out = records(await read(config({"path": str(path), "encoding": "utf-16"}, "T: {{text}}"), echo))
    assert out[0]["text"] == "Grüße" and echo.prompts == ["T: Grüße"]
    # A line break is two bytes in UTF-16 (and 0x0A can be half of another character): lines still count right.
    path = write(tmp_path / "u16b.csv", "id,text\n1,Ċ\nx,y\n".encode("utf-16"))
    out = records(await read(config({"path": str(path), "encoding": "utf-16", "columns": {"id": "integer"}},
                                    "T: {{text}}"), Echo()))
    assert out[0]["text"] == "Ċ" and out[1]["_error"].startswith(f"{path} line 3, column 'id': 'x'")


async def test_stdin_lines_are_decoded_with_the_encoding_and_a_bad_one_is_named() -> None:
    lines = b'{"text": "plain"}\n{"text": "caf\xe9"}\n'
    echo = Echo()
    with pytest.raises(InputError, match=r"stdin line 2 \(byte 14 of the line\) holds 0xE9"):
        await read(config({"path": "-"}, "{{text}}"), echo, stdin=io.BytesIO(lines))
    out = records(await read(config({"path": "-", "encoding": "latin-1"}, "T: {{text}}"), echo,
                             stdin=io.BytesIO(lines)))
    assert [r["text"] for r in out] == ["plain", "café"]


def test_an_unknown_encoding_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"input.encoding.*unknown encoding 'klingon'"):
        load_config(config({"path": "x.csv", "encoding": "klingon"}, "{{text}}"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
async def test_a_utf16_or_utf32_jsonl_file_is_read_with_the_documented_encoding(tmp_path: Path,
                                                                               encoding: str) -> None:
    # 'Ċ' is U+010A: in UTF-16 one of its bytes is 0x0A, which is no line break there.
    text = '{"text": "Grüße"}\r\n{"text": "Ċ and 𝄞"}\n\n{"text": "last"}\n'
    path = write(tmp_path / "u.jsonl", text.encode(encoding))
    echo = Echo()
    out = records(await read(config({"path": str(path), "encoding": encoding}, "T: {{text}}"), echo))
    assert [r["text"] for r in out] == ["Grüße", "Ċ and 𝄞", "last"]
    assert echo.prompts == ["T: Grüße", "T: Ċ and 𝄞", "T: last"]


async def test_a_file_not_in_the_encoding_given_says_so_instead_of_asking_for_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "a"}\n'.encode("utf-16-le") + b"\x00\xd8\x41\x00")
    with pytest.raises(InputError) as caught:
        await read(config({"path": str(path), "encoding": "utf-16-le"}, "{{text}}"), Echo())
    assert "bad.jsonl at or after line 1 holds bytes that are not utf-16-le text" in caught.value.message
    assert "input.encoding is utf-16-le, which the file is not in" in caught.value.message
    latin = write(tmp_path / "latin.csv", "id,text\n1,\u20ac\n".encode("cp1252") + b"2,\x81\n")
    with pytest.raises(InputError) as caught:
        await read(config({"path": str(latin), "encoding": "cp1252"}, "{{text}}"), Echo())
    assert "input.encoding is cp1252, which the file is not in" in caught.value.message
