"""Long JSON documents written a list item at a time: an object whose last key holds one
entry per finding (``verify --json``) or per frame (``info --json``), which a host makes
as long as the image. Built whole, as one object of dicts for json.dumps and its indenting
encoder (pure Python), ``info --json`` of a 185 MB image held 582 MiB; written this way,
each item is encoded and let go, and the bytes are exactly json.dumps's (indent=2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TextIO


def write_with_list(head: Mapping[str, object], key: str, items: Iterable[Mapping[str, object]],
                    out: TextIO) -> None:
    """``print(json.dumps({**head, key: list(items)}, indent=2), file=out)``, byte for byte,
    ``key`` last (it must not be in ``head``), each item encoded as it comes."""
    if key in head:
        raise ValueError(f"{key!r} is the list, not a key of the head")
    text = json.dumps(head, indent=2)
    # JSON escapes every newline inside a string: the head ends in "\n}" unless it is "{}".
    out.write((text[:-2] + ",\n  " if head else "{\n  ") + json.dumps(key) + ": ")
    first = True
    for item in items:
        out.write(("[\n    " if first else ",\n    ") + item_json(item))
        first = False
    out.write("[]\n}\n" if first else "\n  ]\n}\n")


def item_json(d: Mapping[str, object]) -> str:
    """``json.dumps(d, indent=2)`` at the depth of a list item under a top-level key (four
    spaces in). Strings, integers, booleans and nulls are encoded here with json's own C
    string encoder (most items are flat: a finding, a frame); anything else takes
    json.dumps itself."""
    parts = []
    for key, value in d.items():
        if type(key) is not str:
            return json.dumps(d, indent=2).replace("\n", "\n    ")
        if type(value) is str:
            text = _quote(value)
        elif type(value) is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        elif value is True or value is False:
            text = "true" if value else "false"
        else:
            return json.dumps(d, indent=2).replace("\n", "\n    ")
        parts.append(f"{_quote(key)}: {text}")
    if not parts:
        return "{}"
    return "{\n      " + ",\n      ".join(parts) + "\n    }"


_quote = json.encoder.encode_basestring_ascii  # what json.dumps quotes with (ensure_ascii)
