"""SPDY/3 framing (kubeclass/api/spdy.py): what kubectl's port-forward sends, parsed back; what we write, as a
peer reads it."""
import zlib

import pytest

from kubeclass.api import spdy


def test_dictionary_is_spdy3s():
    # 1423 bytes, the Adler-32 a peer's zlib checks the dictionary against (spdystream's is the same)
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == ADLER


ADLER = 0xe3c6a7c2


def test_frames_round_trip_across_arbitrary_chunks():
    client, server = spdy.Session(), spdy.Session()
    wire = (client.syn_stream(1, {"streamType": "error", "port": "8080", "requestID": "0"})
            + client.syn_stream(3, {"streamtype": "data", "port": "8080", "requestid": "0"})
            + client.data(3, b"x" * 600_000, fin=True) + client.ping(7) + client.goaway(3))
    frames = []
    for i in range(0, len(wire), 777):
        frames += server.feed(wire[i:i + 777])
    assert [(f.type, f.stream_id) for f in frames] == [(1, 1), (1, 3), (0, 3), (0, 3), (0, 3), (6, 0), (7, 3)]
    assert frames[0].headers == {"streamtype": "error", "port": "8080", "requestid": "0"}   # names lower-cased
    assert b"".join(f.data for f in frames if f.type == 0) == b"x" * 600_000
    assert max(len(f.data) for f in frames) == spdy.DATA_CHUNK
    assert [f.fin for f in frames if f.type == 0] == [False, False, True]
    assert frames[5].value == 7


def test_replies_share_one_compression_context():
    server, client = spdy.Session(), spdy.Session()
    wire = server.syn_reply(1) + server.syn_reply(3, {"a": "b"}) + server.rst_stream(5)
    frames = client.feed(wire)
    assert [(f.type, f.stream_id, f.headers) for f in frames] == [(2, 1, {}), (2, 3, {"a": "b"}), (3, 5, {})]
    assert frames[2].value == spdy.RST_CANCEL


def test_bad_input_is_a_protocol_error():
    with pytest.raises(spdy.ProtocolError):
        spdy.Session().feed(b"\x80\x02\x00\x01\x00\x00\x00\x0a" + b"\x00" * 10)     # SPDY/2
    with pytest.raises(spdy.ProtocolError):
        spdy.Session().feed(b"\x80\x03\x00\x01\x00\x00\x00\x0c" + b"\x00" * 10 + b"zz")   # not zlib
    with pytest.raises(spdy.ProtocolError):
        spdy.Session().feed(b"\x80\x03\x00\x06\x00\x00\x00\x02\x00\x00")               # a short PING
