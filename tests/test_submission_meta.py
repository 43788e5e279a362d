"""``read_meta`` reads ``submission.toml`` exactly as TOML 1.0 defines it.

TOML's newline is LF or CRLF; a lone carriage return (CR not followed by LF) is not a newline, and
it is not allowed in comments or strings either. The file must therefore not be read in Python's
text mode, whose universal newlines would turn a lone CR into LF and accept such a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbbench.methods.submission import SubmissionError, read_meta

LONE_CR = {
    "only a CR": b"\r",
    "CR ends a statement": b'name = "x"\r',
    "CR separates statements": b'name = "x"\rtrack = "T0"\n',
    "CR ends a comment": b'# a comment\rname = "x"\n',
    "CR at the end of a trailing comment": b'name = "x"  # a comment\r',
    "CR before CRLF": b'name = "x"\r\r\n',
    "CR in a multi-line string": b'name = "x"\ndescription = """one\rtwo"""\n',
}


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "submission.toml"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content", LONE_CR.values(), ids=LONE_CR.keys())
def test_a_lone_carriage_return_is_not_valid_toml(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SubmissionError) as raised:
        read_meta(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: not valid TOML: "), message
    assert "\n" not in message and "\r" not in message, repr(message)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_lf_and_crlf_are_newlines(tmp_path: Path, newline: bytes) -> None:
    lines = [b'name = "x"  # a comment', b'description = """one', b'two"""', b'track = "T0"', b""]
    meta = read_meta(write(tmp_path, newline.join(lines)))
    assert (meta.name, meta.track.value) == ("x", "T0")
    assert meta.description == "one\ntwo"  # a newline in a multi-line string is read as LF either way


def test_the_file_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    meta = read_meta(write(tmp_path, 'name = "x"\ndisplay_name = "Poincaré ∑"\n'.encode()))
    assert meta.display_name == "Poincaré ∑"
    with pytest.raises(SubmissionError, match="not valid TOML"):
        read_meta(write(tmp_path, 'name = "x"\ndisplay_name = "Poincaré"\n'.encode("latin-1")))
