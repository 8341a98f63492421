"""Turn a growing list of generated token ids into text increments, safely for byte-level BPE.

A token of a byte-level BPE vocabulary may hold only part of a UTF-8 character, and some decoders
change earlier text when a token is appended (a SentencePiece word boundary). So each push decodes the
*whole* list of new tokens and emits the suffix not emitted yet, and holds back while the text ends
with the replacement character U+FFFD (an incomplete character) or no longer starts with what was
emitted. :meth:`TextStream.finish` emits what is left. For decoders whose output only grows at the end
(byte-level BPE, SentencePiece, per-character vocabularies) the pieces concatenate to
``tokenizer.decode(ids)``. Decoding everything on each push costs O(n²) characters over n tokens:
negligible next to a forward pass for the few thousand tokens a context holds.

Example:
    >>> class Bytes:  # one token per byte, like the bottom of a byte-level BPE vocabulary
    ...     def decode(self, ids, skip_special_tokens=True):
    ...         return bytes(ids).decode("utf-8", errors="replace")
    >>> stream = TextStream(Bytes())
    >>> [stream.push(b) for b in "né".encode()]  # 'é' is two bytes: held back until complete
    ['n', '', 'é']
    >>> stream.finish(), stream.text
    ('', 'né')
"""

from __future__ import annotations

from typing import Any, Protocol

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    """What :class:`TextStream` needs from a tokenizer (a transformers tokenizer fits)."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> Any: ...


class TextStream:
    """Incremental detokenizer: :meth:`push` one id at a time, get the new text (maybe ``""``); see the module.

    Special tokens (EOS, chat markers) are skipped, as in the final text of a generation.

    Example:
        >>> class Chars:
        ...     def decode(self, ids, skip_special_tokens=True):
        ...         return "".join(map(chr, ids))
        >>> stream = TextStream(Chars())
        >>> "".join(stream.push(i) for i in b"hi!") + stream.finish()
        'hi!'
    """

    def __init__(self, tokenizer: Decoder, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.emitted = ""

    def _decode(self) -> str:
        return str(self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens))

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text that became final (``""`` while it is held back).

        Example:
            >>> class Chars:
            ...     def decode(self, ids, skip_special_tokens=True):
            ...         return "".join(map(chr, ids))
            >>> TextStream(Chars()).push(ord("a"))
            'a'
        """
        self.ids.append(int(token_id))
        text = self._decode()
        if text.endswith(REPLACEMENT) or not text.startswith(self.emitted):
            return ""
        piece = text[len(self.emitted) :]
        self.emitted = text
        return piece

    def finish(self) -> str:
        """The text still held back at the end (an incomplete character stays as U+FFFD).

        Example:
            >>> class Bytes:
            ...     def decode(self, ids, skip_special_tokens=True):
            ...         return bytes(ids).decode("utf-8", errors="replace")
            >>> stream = TextStream(Bytes())
            >>> stream.push(0xC3), stream.finish()  # half of 'é', never completed
            ('', '\ufffd')
        """
        text = self._decode()
        if not text.startswith(self.emitted):  # a decoder that rewrote earlier text: emit nothing more
            return ""
        piece = text[len(self.emitted) :]
        self.emitted = text
        return piece

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return self.emitted
