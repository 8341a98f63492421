"""Evaluation and calibration text: the built-in corpus (CPython's pydoc topics) or a text file.

The built-in text is the string values of the ``topics`` dict in the standard library's
``pydoc_data/topics.py`` (Python's language reference, ~465k characters), read with ``ast``
(never imported or executed), joined in key order with blank lines. It is split once, by
characters, into a calibration half and an evaluation half: the cut is just after the first
paragraph break at or after the middle character, so the halves are disjoint and concatenate to the
whole. The text differs between Python versions; :func:`text_fingerprint` identifies it.

Example:
    >>> calib, evaluation = split_text("aaaa\\n\\nbbbb\\n\\ncccc")
    >>> calib, evaluation
    ('aaaa\\n\\nbbbb\\n\\n', 'cccc')
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from leanml.errors import LeanmlError

BUILTIN = "builtin"
PARTS = ("eval", "calib", "all")
SEPARATOR = "\n\n"


class Tokenizer(Protocol):
    """What :func:`tokenize_text` needs from a tokenizer (a transformers tokenizer fits)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@functools.cache
def builtin_text() -> str:
    """The whole built-in corpus: ``pydoc_data.topics.topics`` values in sorted-key order, blank-line joined.

    Example:
        >>> len(builtin_text()) > 100_000
        True
    """
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        raise LeanmlError("the built-in corpus (pydoc_data/topics.py) is missing from this Python", "pass a text file")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "topics":
            topics = ast.literal_eval(node.value)
            if isinstance(topics, dict) and all(isinstance(v, str) for v in topics.values()):
                return SEPARATOR.join(topics[k].strip() for k in sorted(topics))
    raise LeanmlError(f"no topics dict in {spec.origin}", "pass a text file instead of the built-in corpus")


def split_text(text: str) -> tuple[str, str]:
    """Split ``text`` into (calibration, evaluation): just after the first paragraph break at or after the
    middle character (at the middle if there is none). Disjoint, and ``calib + evaluation == text``.

    Example:
        >>> split_text("abcdef")
        ('abc', 'def')
    """
    mid = len(text) // 2
    cut = text.find(SEPARATOR, mid)
    cut = mid if cut < 0 else cut + len(SEPARATOR)
    return text[:cut], text[cut:]


def load_text(source: str = BUILTIN, part: str = "eval") -> str:
    """Text to evaluate or calibrate on: ``"builtin"`` (its ``part``: eval, calib or all) or a UTF-8 file path
    (used whole: ``part`` applies to the built-in corpus only).

    Example:
        >>> calib, evaluation = load_text("builtin", "calib"), load_text("builtin", "eval")
        >>> calib + evaluation == load_text("builtin", "all")
        True
    """
    if part not in PARTS:
        raise LeanmlError(f"unknown corpus part {part!r}", f"choose one of: {', '.join(PARTS)}")
    if source == BUILTIN:
        text = builtin_text()
        if part != "all":
            text = split_text(text)[0 if part == "calib" else 1]
        return text
    path = Path(source)
    if not path.is_file():
        raise LeanmlError(f"text file not found: {path}", f"pass a UTF-8 text file or {BUILTIN!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LeanmlError(f"{path} is not UTF-8 text: {e.reason} at byte {e.start}", "convert it to UTF-8") from e
    if not text.strip():
        raise LeanmlError(f"text file {path} is empty", "pass a file with text in it")
    return text


def text_fingerprint(text: str) -> dict[str, object]:
    """Characters, SHA-256 (first 16 hex digits) and Python version: enough to tell whether two runs used the
    same text (the built-in corpus changes with the Python release).

    Example:
        >>> text_fingerprint("hi")["sha256"]
        '8f434346648f6b96'
    """
    return {
        "chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def min_tokens(ctx: int) -> int:
    """Fewest tokens a perplexity run at context ``ctx`` needs: two full chunks, as ``llama-perplexity`` asks.

    Example:
        >>> min_tokens(512)
        1024
    """
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 2:
        raise LeanmlError(f"context length must be an integer >= 2, got {ctx!r}", "pass e.g. --ctx 512")
    return 2 * ctx


def check_token_count(n_tokens: int, ctx: int, what: str = "the text") -> None:
    """Raise a :class:`LeanmlError` when ``n_tokens`` is too few for context ``ctx`` (see :func:`min_tokens`).

    Example:
        >>> check_token_count(100, 64, "notes.txt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: notes.txt has 100 tokens, too few for context 64 (needs at least 128) (...)
    """
    need = min_tokens(ctx)
    if n_tokens < need:
        raise LeanmlError(
            f"{what} has {n_tokens} tokens, too few for context {ctx} (needs at least {need})",
            "use a longer text or a smaller --ctx",
        )


def tokenize_text(tokenizer: Tokenizer, text: str, ctx: int, add_special_tokens: bool = True) -> list[int]:
    """Tokenize ``text`` once, whole (as ``llama-perplexity`` does), and check it fills two chunks of ``ctx``.

    ``add_special_tokens=True`` lets the tokenizer add its BOS when its config says so (llama.cpp's
    ``add_bos`` rule); no EOS is added.

    Example:
        >>> class Chars:
        ...     def encode(self, text, add_special_tokens=True):
        ...         return [ord(c) for c in text]
        >>> len(tokenize_text(Chars(), "x" * 300, ctx=128))
        300
    """
    if not text.strip():
        raise LeanmlError("the text is empty", "pass a text with content")
    ids: Sequence[int] = tokenizer.encode(text, add_special_tokens=add_special_tokens)
    check_token_count(len(ids), ctx)
    return list(ids)


def added_bos(tokenizer: Tokenizer) -> int | None:
    """The BOS id the tokenizer puts in front of a text (llama.cpp's ``add_bos``), or None if it adds none:
    pass it as ``perplexity(..., bos_id=...)`` to follow ``llama-perplexity`` exactly.

    Example:
        >>> class Chars:
        ...     bos_token_id = 1
        ...     def encode(self, text, add_special_tokens=True):
        ...         return [1] * add_special_tokens + [ord(c) for c in text]
        >>> added_bos(Chars())
        1
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer.encode("a", add_special_tokens=True)
    return int(bos) if bos is not None and len(ids) > 0 and ids[0] == bos else None
