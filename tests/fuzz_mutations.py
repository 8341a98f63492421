"""Seeded mutations of files for the loader fuzz tests: one place that says how a file gets damaged.

Each mutation is a named case, so a failing case says what was done to the file. Byte mutations work on any
binary format (truncation, byte flips in header and body, empty file, garbage); JSON mutations work on a parsed
document (missing keys, wrong types, negative and huge values, non-UTF-8, deep nesting).

Example:
    >>> cases = byte_mutations(b"MAGIC" + bytes(100), header_len=5, count=8, seed=0)
    >>> len(cases), all(isinstance(c.data, bytes) for c in cases)
    (8, True)
    >>> [c.name for c in json_mutations({"a": {"b": 1}}, count=4, seed=0)][:1]
    ['empty']
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Values a field may be swapped to: wrong types, negative, zero, huge, non-finite-as-JSON-string.
BAD_VALUES: tuple[Any, ...] = (None, "x", -1, 0, 2**31, 2**62, -(2**62), 1.5, [], {}, True, [2**62], "NaN")


@dataclass(frozen=True)
class Mutation:
    """A damaged copy of a file: ``name`` says what was done, ``data`` is the new content."""

    name: str
    data: bytes


def byte_mutations(data: bytes, header_len: int, count: int, seed: int) -> list[Mutation]:
    """``count`` seeded damaged copies of binary ``data`` whose first ``header_len`` bytes are its header.

    Always includes the empty file, a truncation inside the header and inside the body, and random bytes; the
    rest are 1–8 byte flips, half in the header and half in the body.
    """
    rng = random.Random(seed)
    header_len = max(1, min(header_len, len(data)))
    fixed = [
        Mutation("empty", b""),
        Mutation("garbage", bytes(rng.randrange(256) for _ in range(64))),
        Mutation("truncated-in-header", data[: rng.randrange(1, header_len + 1)]),
        Mutation("truncated-in-body", data[: rng.randrange(header_len, max(header_len + 1, len(data)))]),
        Mutation("appended", data + b"\0" * 13),
    ]
    out = fixed[:count]
    while len(out) < count:
        buf = bytearray(data)
        in_header = len(out) % 2 == 0 or len(data) <= header_len
        lo, hi = (0, header_len) if in_header else (header_len, len(data))
        flips = rng.randrange(1, 9)
        for _ in range(flips):
            i = rng.randrange(lo, hi)
            buf[i] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        out.append(Mutation(f"flip{flips}-{'header' if in_header else 'body'}-{len(out)}", bytes(buf)))
    return out


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a JSON document (dict keys and list indices), parents before children."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:4]):  # a few items of long lists are enough
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _copy_with(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def deep_json(depth: int) -> bytes:
    """A JSON document nested ``depth`` lists deep (breaks naive recursive readers)."""
    return b"[" * depth + b"]" * depth


def json_mutations(doc: Any, count: int, seed: int) -> list[Mutation]:
    """``count`` seeded damaged copies of the JSON document ``doc`` (encoded as UTF-8 bytes).

    Always includes the empty file, non-UTF-8 bytes, deep nesting, a non-object top level and truncated text; the
    rest delete a key or swap a field to one of :data:`BAD_VALUES`, over key paths chosen at random.
    """
    rng = random.Random(seed)
    text = json.dumps(doc).encode()
    fixed = [
        Mutation("empty", b""),
        Mutation("non-utf8", b"\xff\xfe" + text[2:]),
        Mutation("deep-nesting", deep_json(100_000)),
        Mutation("top-level-list", b"[1, 2]"),
        Mutation("truncated-text", text[: max(1, len(text) // 2)]),
    ]
    out = fixed[:count]
    paths = list(_paths(doc))
    while len(out) < count and paths:
        path = rng.choice(paths)
        label = "/".join(map(str, path))
        if rng.random() < 0.3 and not isinstance(path[-1], int):
            out.append(Mutation(f"missing:{label}", json.dumps(_copy_with(doc, path, None, delete=True)).encode()))
        else:
            value = rng.choice(BAD_VALUES)
            mutated = _copy_with(doc, path, value)
            out.append(Mutation(f"set:{label}={value!r}", json.dumps(mutated).encode()))
    return out
