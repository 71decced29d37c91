"""JSON lines straight from a record block: the fast lane of ``extract -f jsonl``.

The record pass otherwise builds a Record and a LocatedRecord for every record only to
format them. Here a frame's authenticated plaintext becomes the lines of
``export.jsonl_lines`` directly, decoded with the same checks as ``decode_record_block``
(the same ``_Columns``, the same field walk, strict UTF-8), so it accepts and refuses
exactly the blocks that function does, with the same error. tests/test_blocklines.py holds
the lines equal on every vector and sample and on generated blocks (hypothesis).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .codec import HEAD_FIELDS, HEAD_LEVEL, HEAD_PANIC, DecodeError, _Columns
from .export import _json_str, _rfc3339_us, _target_json
from .records import Level

_LEVEL_LABELS = tuple(lv.label for lv in Level)  # by the head's level bits, as codec._LEVELS


class JsonlBlocks:
    """Formats the blocks of one stream (``stream``: its name). Keeps the JSON of the
    names it met (a stream's blocks name the same few components again and again)."""

    def __init__(self, stream: str, realtime_base_us: Mapping[int, int] | None = None) -> None:
        self.stream_json = _json_str(stream)
        self.bases = realtime_base_us
        self._middles: dict[tuple[str, str, int], str] = {}

    def lines(self, plaintext: bytes, boot: int, seq: int, verified: bool) -> tuple[list[str], list[int]]:
        """The lines of the block's records and their times since boot, in record order.
        Raises DecodeError where ``decode_record_block`` does."""
        try:
            c = _Columns(plaintext)
            fields = c.walk_extras(plaintext)
            msgs = c.messages
            ascii = msgs.isascii()
            text = msgs.decode("ascii") if ascii else ""
            prefix = f'{{"boot":{boot},"stream":{self.stream_json},"seq":{seq},'
            base = self.bases.get(boot) if self.bases is not None else None
            names, middles, times = c.names, self._middles, c.times
            out: list[str] = []
            pos = 0
            for i, (head, name, t, ln) in enumerate(zip(c.heads, c.ids, times, c.lens, strict=True)):
                end = pos + ln
                msg = text[pos:end] if ascii else msgs[pos:end].decode()
                pos = end
                svc, comp, tgt = names[name]
                level = head & HEAD_LEVEL
                middle = middles.get((svc, comp, level))
                if middle is None:
                    middle = (f'"service":{_json_str(svc)},"component":{_json_str(comp)},'
                              f'"level":"{_LEVEL_LABELS[level]}",')
                    middles[(svc, comp, level)] = middle
                line = f'{prefix}{middle}"t_ns":{t},"message":{_json_str(msg)}'
                if tgt is not None or head & (HEAD_FIELDS | HEAD_PANIC) or not verified:
                    line += _tail(tgt, fields.get(i, ()) if head & HEAD_FIELDS else (),
                                  bool(head & HEAD_PANIC), verified)
                if base is not None:
                    line += f',"host_time_untrusted":"{_rfc3339_us(base + t // 1000)}"'
                out.append(line + "}\n")
        except UnicodeDecodeError as e:
            raise DecodeError(f"record text is not UTF-8: {e.reason}") from None
        return out, times


def _tail(target: str | None, fields: tuple[tuple[str, str], ...], panic: bool, verified: bool) -> str:
    """export._jsonl_tail of such a record."""
    tail = ""
    if target is not None:
        tail += _target_json(target)
    if fields:
        tail += ',"fields":' + json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":"))
    if panic:
        tail += ',"panic":true'
    if not verified:
        tail += ',"verified":false'
    return tail
