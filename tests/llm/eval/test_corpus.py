from __future__ import annotations

from pathlib import Path

import pytest

from leanml.errors import LeanmlError
from leanml.llm.eval.corpus import (
    added_bos,
    builtin_text,
    check_token_count,
    load_text,
    split_text,
    text_fingerprint,
    tokenize_text,
)


def test_builtin_text_is_the_pydoc_topics_joined_in_key_order() -> None:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    assert builtin_text() == "\n\n".join(topics[k].strip() for k in sorted(topics))
    assert len(builtin_text()) > 100_000


def test_split_is_deterministic_disjoint_and_complete() -> None:
    whole = load_text("builtin", "all")
    calib, evaluation = load_text("builtin", "calib"), load_text("builtin", "eval")
    assert calib + evaluation == whole  # disjoint halves covering the text, calibration first
    assert split_text(whole) == (calib, evaluation)
    assert calib.endswith("\n\n") and not evaluation.startswith("\n")  # cut at a paragraph break
    assert abs(len(calib) - len(whole) / 2) < 0.01 * len(whole)
    builtin_text.cache_clear()
    assert load_text("builtin", "eval") == evaluation  # re-read from disk: same text
    assert text_fingerprint(evaluation) == text_fingerprint(load_text())


def test_split_without_paragraphs_cuts_at_the_middle() -> None:
    assert split_text("abcdefg") == ("abc", "defg")
    assert split_text("") == ("", "")


def test_load_text_file(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("hello world\n", encoding="utf-8")
    assert load_text(str(p)) == "hello world\n"
    assert load_text(str(p), "calib") == "hello world\n"  # parts split the built-in corpus only


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"  \n\t\n", "empty"), (b"\xff\xfe\x00bad", "not UTF-8")],
)
def test_load_text_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(content)
    with pytest.raises(LeanmlError, match=message):
        load_text(str(p))


def test_load_text_errors(tmp_path: Path) -> None:
    with pytest.raises(LeanmlError, match="not found"):
        load_text(str(tmp_path / "missing.txt"))
    with pytest.raises(LeanmlError, match="unknown corpus part"):
        load_text("builtin", "test")


class Chars:
    bos_token_id = 1

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) % 100 for c in text]


def test_tokenize_text_checks_length_for_the_context() -> None:
    assert len(tokenize_text(Chars(), "x" * 255, ctx=128)) == 256  # BOS + 255 = 2 * 128: just enough
    with pytest.raises(LeanmlError, match="254 tokens, too few for context 128"):
        tokenize_text(Chars(), "x" * 254, ctx=128, add_special_tokens=False)
    with pytest.raises(LeanmlError, match="empty"):
        tokenize_text(Chars(), " \n", ctx=4)
    with pytest.raises(LeanmlError, match="context length"):
        check_token_count(10, 1)


def test_added_bos() -> None:
    assert added_bos(Chars()) == 1

    class NoBos(Chars):
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return [ord(c) % 100 for c in text]

    assert added_bos(NoBos()) is None
