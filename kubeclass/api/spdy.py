"""SPDY/3 framing, as Kubernetes' streaming connections use it (k8s.io/apimachinery's httpstream/spdy over
moby/spdystream): kubectl's port-forward tunnels an SPDY session through a WebSocket (subprotocol
`SPDY/3.1+portforward.k8s.io`), and older clients upgrade to it directly. No maintained Python library speaks
SPDY; this is the part a server needs: parse the peer's frames from a byte stream and write SYN_REPLY, data,
RST_STREAM, PING and GOAWAY frames. Like spdystream, no flow control is enforced (WINDOW_UPDATE and SETTINGS
are read and ignored).

Frames (SPDY/3 draft, section 2.2): a control frame starts with 0x8003 (control bit, version 3), its type
(16 bits), flags (8) and length (24); a data frame with its stream id (31 bits), flags and length. Header
blocks are zlib-compressed with the protocol's dictionary, one compression context per direction for the
whole session. Pure: no I/O."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL, RST_INTERNAL_ERROR = 1, 3, 5, 6
DATA_CHUNK = 256 * 1024         # the largest data frame written (spdystream reads frames of any length up to 16 MiB)

_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges "
          "age allow authorization cache-control connection content-base content-encoding content-language "
          "content-length content-location content-md5 content-range content-type date etag expect expires from "
          "host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location "
          "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer "
          "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status").split() + \
    ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
# the header compression dictionary of SPDY/3 (section 2.6.10.1): length-prefixed words, then the tail
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


@dataclass
class Frame:
    type: int                       # 0 for a data frame, else the control frame's type
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""               # a data frame's payload
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0                  # RST_STREAM / GOAWAY status, PING id, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Session:
    """One side's codec state: feed() the peer's bytes, get its frames; the write methods give bytes to send."""

    def __init__(self, max_header_block: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)
        self.max_header_block = max_header_block

    # ------------------------------------------------------------------ reading
    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, payload = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            out.append(self._frame(head, payload))
        return out

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(0, flags, int.from_bytes(head[:4], "big") & 0x7FFFFFFF, data=payload)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        if version != 3:
            raise ProtocolError(f"SPDY version {version} is not supported (3 is)")
        typ = int.from_bytes(head[2:4], "big")
        if typ == SYN_STREAM:
            self._need(payload, 10)
            return Frame(typ, flags, _id(payload, 0), headers=self._headers(payload[10:]))
        if typ in (SYN_REPLY, HEADERS):
            self._need(payload, 4)
            return Frame(typ, flags, _id(payload, 0), headers=self._headers(payload[4:]))
        if typ in (RST_STREAM, WINDOW_UPDATE):
            self._need(payload, 8)
            return Frame(typ, flags, _id(payload, 0), value=int.from_bytes(payload[4:8], "big") & 0x7FFFFFFF)
        if typ == GOAWAY:
            self._need(payload, 4)
            return Frame(typ, flags, _id(payload, 0), value=int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else 0)
        if typ == PING:
            self._need(payload, 4)
            return Frame(typ, flags, value=int.from_bytes(payload[:4], "big"))
        return Frame(typ, flags)    # SETTINGS, NOOP, CREDENTIAL and unknown types: nothing to act on

    @staticmethod
    def _need(payload: bytes, n: int) -> None:
        if len(payload) < n:
            raise ProtocolError("a control frame shorter than its type requires")

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, self.max_header_block)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block too large")
        headers: dict[str, str] = {}
        try:
            (n,) = struct.unpack_from(">I", raw, 0)
            off = 4
            for _ in range(n):
                (ln,) = struct.unpack_from(">I", raw, off)
                name = raw[off + 4:off + 4 + ln].decode("latin-1").lower()
                off += 4 + ln
                (lv,) = struct.unpack_from(">I", raw, off)
                value = raw[off + 4:off + 4 + lv].decode("latin-1")
                off += 4 + lv
                if off > len(raw):
                    raise ProtocolError("truncated header block")
                headers[name] = value
        except struct.error:
            raise ProtocolError("truncated header block") from None
        return headers

    # ------------------------------------------------------------------ writing
    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            kb, vb = k.lower().encode("latin-1"), v.encode("latin-1")
            raw += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(typ: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHB", 0x8003, typ, flags) + len(payload).to_bytes(3, "big") + payload

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + self._header_block(headers or {}))

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        """(The client's frame: tests and clients.)"""
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._header_block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        out = []
        view = memoryview(data)
        while True:
            chunk, view = view[:DATA_CHUNK], view[DATA_CHUNK:]
            last = not len(view)
            out.append(struct.pack(">IB", stream_id & 0x7FFFFFFF, FLAG_FIN if fin and last else 0)
                       + len(chunk).to_bytes(3, "big") + bytes(chunk))
            if last:
                return b"".join(out)

    def rst_stream(self, stream_id: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def _id(payload: bytes, off: int) -> int:
    return int.from_bytes(payload[off:off + 4], "big") & 0x7FFFFFFF
