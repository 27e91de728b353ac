"""Framing of the bridge protocol: a 4-byte big-endian length, then msgpack.

Both directions between the agent and a bridge use the same frame: the
length of the payload as an unsigned 32-bit big-endian integer, then that
many bytes holding one msgpack map.  A length above the receiver's limit is
a protocol fault: the reader raises FrameTooLarge *before* reading or
allocating the body, because a garbage length (a stray print, a corrupted
stream) must never turn into a 4 GiB allocation.  There is no resync: once
framing is lost the only safe move is to drop the connection.

The read and write functions accept either an integer file descriptor or a
binary file object, and cope with partial reads and writes (pipes hand data
over in pieces of at most their buffer size).
"""

import collections
import os
import select
import struct

import msgpack

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "MAX_LENGTH",
    "ProtocolError",
    "FrameTooLarge",
    "TruncatedFrame",
    "pack",
    "packer",
    "unpack",
    "encode_frame",
    "decode_header",
    "read_frame",
    "FrameReader",
    "write_frame",
    "read_message",
    "write_message",
]

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HEADER_SIZE = 4
MAX_LENGTH = 0xFFFFFFFF

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The byte stream cannot be trusted any more (bad length, cut frame)."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more bytes than the limit allows."""

    def __init__(self, length, max_frame):
        super().__init__(
            "frame length %d exceeds the limit of %d bytes" % (length, max_frame)
        )
        self.length = length
        self.max_frame = max_frame


class TruncatedFrame(ProtocolError):
    """End of file arrived in the middle of a frame."""

    def __init__(self, expected, received):
        super().__init__(
            "end of file after %d of %d bytes of a frame" % (received, expected)
        )
        self.expected = expected
        self.received = received


def pack(obj):
    """Encode obj as msgpack; str becomes str and bytes becomes bin."""
    return msgpack.packb(obj, use_bin_type=True)


def packer():
    """A pack function of its own (faster than pack: no Packer per call);
    for one thread only."""
    return msgpack.Packer(use_bin_type=True).pack


def unpack(data):
    """Decode exactly one msgpack object from data.

    Raises ValueError (or a subclass from msgpack) if data is not exactly one
    well-formed object.  Map keys may be any hashable type, not only str, so
    that any value the agent forwards survives a round trip.
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_frame(payload):
    """Return the length header followed by payload, as one bytes object."""
    if len(payload) > MAX_LENGTH:
        raise FrameTooLarge(len(payload), MAX_LENGTH)
    return _HEADER.pack(len(payload)) + (payload if type(payload) is bytes else bytes(payload))


def decode_header(header, max_frame=DEFAULT_MAX_FRAME):
    """Return the payload length announced by a 4-byte header.

    Raises FrameTooLarge if the length is above max_frame.
    """
    (length,) = _HEADER.unpack(header)
    if length > max_frame:
        raise FrameTooLarge(length, max_frame)
    return length


def _read_into(source, view):
    """Read what is available into view; return the count, 0 at end of file."""
    if isinstance(source, int):
        return os.readv(source, [view])
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        count = readinto(view)
    else:
        data = source.read(len(view))
        count = len(data)
        view[:count] = data
    if count is None:
        raise BlockingIOError("source has no data ready (non-blocking)")
    return count


def _read_exactly(source, size, allow_eof):
    """Read exactly size bytes, looping over partial reads.

    Returns None if allow_eof and the source was at end of file before the
    first byte; raises TruncatedFrame for an end of file after it.
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = _read_into(source, view[received:])
        if count == 0:
            if received == 0 and allow_eof:
                return None
            raise TruncatedFrame(size, received)
        received += count
    return buffer


def read_frame(source, max_frame=DEFAULT_MAX_FRAME):
    """Read one frame from source and return its payload as a bytearray
    (not copied into bytes: a frame can be 64 MiB).

    Returns None on a clean end of file (before the first header byte).
    Raises FrameTooLarge if the header announces more than max_frame bytes
    (nothing beyond the header is read or allocated), and TruncatedFrame if
    the stream ends inside a frame.
    """
    header = _read_exactly(source, HEADER_SIZE, allow_eof=True)
    if header is None:
        return None
    length = decode_header(bytes(header), max_frame)
    try:
        payload = _read_exactly(source, length, allow_eof=False)
    except TruncatedFrame as exc:
        raise TruncatedFrame(HEADER_SIZE + length, HEADER_SIZE + exc.received) from None
    return payload


def _write_all(dest, data):
    if isinstance(dest, int):
        # One system call for the whole frame, the usual case.
        count = os.write(dest, data)
        if count == len(data):
            return
        data = memoryview(data)[count:]
    view = memoryview(data)
    written = 0
    while written < len(view):
        if isinstance(dest, int):
            count = os.write(dest, view[written:])
        else:
            count = dest.write(view[written:])
            if count is None:
                raise BlockingIOError("destination is full (non-blocking)")
        written += count
    if not isinstance(dest, int):
        flush = getattr(dest, "flush", None)
        if flush is not None:
            flush()


def write_frame(dest, payload, max_frame=MAX_LENGTH):
    """Write payload to dest as one whole frame, looping on partial writes.

    Raises FrameTooLarge, writing nothing, if payload is above max_frame.
    """
    if len(payload) > max_frame:
        raise FrameTooLarge(len(payload), max_frame)
    if isinstance(dest, int) and len(payload) > _COPY_LIMIT:
        _writev_all(dest, _HEADER.pack(len(payload)), payload)
    else:
        _write_all(dest, encode_frame(payload))


# Above this, a frame's header and payload go out with writev instead of
# being joined into one buffer first (a copy of the payload).
_COPY_LIMIT = 16 * 1024


def _writev_all(fd, header, payload):
    buffers = [header, memoryview(payload)]
    while buffers:
        count = os.writev(fd, buffers)
        while buffers and count >= len(buffers[0]):
            count -= len(buffers[0])
            buffers.pop(0)
        if buffers and count:
            buffers[0] = memoryview(buffers[0])[count:]


class FrameReader:
    """Frames from a file descriptor through a buffer of our own.

    next() blocks for the next frame; read_available() takes whatever the
    pipe holds now without blocking, so the frames already sent (but not
    started) can be looked at while a handler runs (see Runtime.release).
    A header above max_frame raises FrameTooLarge as soon as it is read:
    its length is never allocated.
    """

    CHUNK = 1 << 16

    def __init__(self, fd, max_frame=DEFAULT_MAX_FRAME):
        self.fd = fd
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.frames = collections.deque()  # complete payloads, oldest first
        self.eof = False

    def _split(self):
        buffer = self.buffer
        offset = 0
        size = len(buffer)
        while size - offset >= HEADER_SIZE:
            (length,) = _HEADER.unpack_from(buffer, offset)
            if length > self.max_frame:
                raise FrameTooLarge(length, self.max_frame)
            if size - offset - HEADER_SIZE < length:
                break
            start = offset + HEADER_SIZE
            self.frames.append(buffer[start:start + length])
            offset = start + length
        if offset:
            del buffer[:offset]

    def _read(self):
        data = os.read(self.fd, self.CHUNK)
        if not data:
            self.eof = True
        else:
            self.buffer += data
            self._split()

    def read_available(self):
        """Take what the pipe holds now; never blocks."""
        while not self.eof and select.select([self.fd], [], [], 0)[0]:
            self._read()

    def next(self):
        """The next payload (a bytearray); None on a clean end of file.

        Raises TruncatedFrame if the stream ends inside a frame.
        """
        while not self.frames:
            if self.eof:
                if self.buffer:
                    expected = HEADER_SIZE
                    if len(self.buffer) >= HEADER_SIZE:
                        expected += decode_header(bytes(self.buffer[:HEADER_SIZE]),
                                                  self.max_frame)
                    raise TruncatedFrame(expected, len(self.buffer))
                return None
            self._read()
        return self.frames.popleft()


def read_message(source, max_frame=DEFAULT_MAX_FRAME):
    """Read one frame and decode it; None on a clean end of file."""
    payload = read_frame(source, max_frame)
    if payload is None:
        return None
    return unpack(payload)


def write_message(dest, obj, max_frame=MAX_LENGTH):
    """Encode obj as msgpack and write it as one frame."""
    write_frame(dest, pack(obj), max_frame)
