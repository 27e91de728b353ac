"""Framing of the bridge protocol (pyfleet_bridge.protocol), without processes."""

import io
import os
import struct
import sys
import threading
import unittest

import support

sys.path.insert(0, support.BRIDGE_PATH)

from pyfleet_bridge import protocol  # noqa: E402


class ChunkedSource:
    """A binary source that hands out at most `chunk` bytes per read and
    records the size of every read asked of it."""

    def __init__(self, data, chunk=1):
        self.data = bytes(data)
        self.position = 0
        self.chunk = chunk
        self.requested = []

    def readinto(self, view):
        self.requested.append(len(view))
        count = min(len(view), self.chunk, len(self.data) - self.position)
        view[:count] = self.data[self.position:self.position + count]
        self.position += count
        return count


class ReadOnlySource(ChunkedSource):
    """Like ChunkedSource but with only read(), no readinto()."""

    readinto = None

    def read(self, size):
        self.requested.append(size)
        count = min(size, self.chunk, len(self.data) - self.position)
        data = self.data[self.position:self.position + count]
        self.position += count
        return data


class TrickleSink(io.RawIOBase):
    """A raw sink that accepts at most `chunk` bytes per write."""

    def __init__(self, chunk):
        self.chunk = chunk
        self.received = bytearray()
        self.writes = 0

    def writable(self):
        return True

    def write(self, data):
        self.writes += 1
        count = min(self.chunk, len(data))
        self.received += bytes(data[:count])
        return count


def framed(payload):
    return struct.pack(">I", len(payload)) + payload


class ReadFrameTest(unittest.TestCase):

    def test_reads_a_frame_delivered_one_byte_at_a_time(self):
        payload = protocol.pack({"id": 7, "cmd": "echo", "args": [1, 2, 3]})
        source = ChunkedSource(framed(payload) + framed(b"second"), chunk=1)
        self.assertEqual(protocol.read_frame(source), payload)
        self.assertEqual(protocol.read_frame(source), b"second")
        self.assertIsNone(protocol.read_frame(source))

    def test_reads_from_a_source_that_only_has_read(self):
        source = ReadOnlySource(framed(b"hello world"), chunk=3)
        self.assertEqual(protocol.read_frame(source), b"hello world")

    def test_reads_a_frame_larger_than_the_pipe_buffer_from_an_fd(self):
        payload = os.urandom(3 * 1024 * 1024)
        read_fd, write_fd = os.pipe()
        self.addCleanup(os.close, read_fd)

        def writer():
            try:
                os.write(write_fd, framed(payload))
            finally:
                os.close(write_fd)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        self.assertEqual(protocol.read_frame(read_fd), payload)
        thread.join(support.TIMEOUT)
        self.assertFalse(thread.is_alive())
        self.assertIsNone(protocol.read_frame(read_fd))

    def test_clean_end_of_file_returns_none(self):
        self.assertIsNone(protocol.read_frame(ChunkedSource(b"")))

    def test_end_of_file_inside_the_header_is_a_truncated_frame(self):
        with self.assertRaises(protocol.TruncatedFrame):
            protocol.read_frame(ChunkedSource(b"\x00\x00"))

    def test_end_of_file_inside_the_body_is_a_truncated_frame(self):
        with self.assertRaises(protocol.TruncatedFrame) as caught:
            protocol.read_frame(ChunkedSource(struct.pack(">I", 10) + b"abc", chunk=2))
        self.assertEqual(caught.exception.expected, 14)
        self.assertEqual(caught.exception.received, 7)

    def test_zero_length_frame_is_an_empty_payload(self):
        self.assertEqual(protocol.read_frame(ChunkedSource(framed(b""))), b"")

    def test_oversized_length_is_refused_before_any_body_is_read(self):
        source = ChunkedSource(b"\xff\xff\xff\xff" + b"x" * 100, chunk=100)
        with self.assertRaises(protocol.FrameTooLarge) as caught:
            protocol.read_frame(source, max_frame=1024)
        self.assertEqual(caught.exception.length, 0xFFFFFFFF)
        self.assertEqual(caught.exception.max_frame, 1024)
        # Only the header was asked for: the bogus length was never allocated.
        self.assertEqual(source.requested, [4])
        self.assertEqual(source.position, 4)

    def test_length_equal_to_the_limit_is_accepted(self):
        source = ChunkedSource(framed(b"x" * 64), chunk=1000)
        self.assertEqual(protocol.read_frame(source, max_frame=64), b"x" * 64)
        with self.assertRaises(protocol.FrameTooLarge):
            protocol.read_frame(ChunkedSource(framed(b"x" * 65)), max_frame=64)

    def test_default_limit_is_64_mib(self):
        self.assertEqual(protocol.DEFAULT_MAX_FRAME, 64 * 1024 * 1024)
        header = struct.pack(">I", 64 * 1024 * 1024 + 1)
        with self.assertRaises(protocol.FrameTooLarge):
            protocol.read_frame(ChunkedSource(header))


class FrameReaderTest(unittest.TestCase):
    """The bridge's own read buffer: many frames per read, none lost."""

    def setUp(self):
        self.read_fd, self.write_fd = os.pipe()
        self.addCleanup(os.close, self.read_fd)
        self.reader = protocol.FrameReader(self.read_fd, max_frame=1024)

    def write(self, data):
        os.write(self.write_fd, data)

    def close(self):
        os.close(self.write_fd)
        self.write_fd = None

    def tearDown(self):
        if self.write_fd is not None:
            os.close(self.write_fd)

    def test_one_read_brings_every_frame_the_pipe_holds(self):
        self.write(b"".join(protocol.encode_frame(b"r%d" % i) for i in range(5)))
        self.assertEqual(self.reader.next(), b"r0")
        self.assertEqual(list(self.reader.frames), [b"r1", b"r2", b"r3", b"r4"])

    def test_a_frame_split_across_writes_is_joined(self):
        data = protocol.encode_frame(b"x" * 300)
        self.write(data[:3])
        self.reader.read_available()
        self.assertEqual(len(self.reader.frames), 0)
        self.write(data[3:200])
        self.reader.read_available()
        self.write(data[200:])
        self.assertEqual(self.reader.next(), b"x" * 300)

    def test_read_available_never_blocks_on_an_empty_pipe(self):
        self.reader.read_available()
        self.assertEqual(len(self.reader.frames), 0)
        self.assertFalse(self.reader.eof)

    def test_oversized_header_is_refused_before_its_body_arrives(self):
        self.write(struct.pack(">I", 1025))
        with self.assertRaises(protocol.FrameTooLarge):
            self.reader.next()

    def test_clean_end_of_file_is_none_and_a_cut_frame_is_truncated(self):
        self.write(protocol.encode_frame(b"last"))
        self.close()
        self.assertEqual(self.reader.next(), b"last")
        self.assertIsNone(self.reader.next())
        cut_read, cut_write = os.pipe()
        self.addCleanup(os.close, cut_read)
        os.write(cut_write, protocol.encode_frame(b"abcdef")[:7])
        os.close(cut_write)
        with self.assertRaises(protocol.TruncatedFrame):
            protocol.FrameReader(cut_read).next()


class LargeFrameTest(unittest.TestCase):
    """Frames above the read chunk and the pipe's capacity, written with
    writev (no joined copy): the same bytes, in order, cut frames caught."""

    def setUp(self):
        self.read_fd, self.write_fd = os.pipe()
        self.addCleanup(os.close, self.read_fd)

    def write_in_thread(self, write):
        """Runs write(fd) beside the reader (the pipe holds less), then closes fd."""
        def run():
            try:
                write(self.write_fd)
            finally:
                os.close(self.write_fd)
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join, 10)

    def test_large_frames_between_small_ones_arrive_whole_and_in_order(self):
        large = bytes(range(256)) * 1200           # 300 KiB: above the pipe's capacity too
        payloads = [b"a", large, b"b" * 20000, large[::-1], b"c"]
        self.write_in_thread(lambda fd: [protocol.write_frame(fd, p) for p in payloads])
        reader = protocol.FrameReader(self.read_fd, max_frame=1 << 20)
        self.assertEqual([bytes(reader.next()) for _ in payloads], payloads)
        self.assertIsNone(reader.next())

    def test_a_large_frame_cut_by_end_of_file_is_truncated_with_its_counts(self):
        frame = protocol.encode_frame(b"x" * 200000)
        self.write_in_thread(lambda fd: protocol.write_frame(fd, b"") or os.write(fd, frame[:150000]))
        reader = protocol.FrameReader(self.read_fd, max_frame=1 << 20)
        self.assertEqual(reader.next(), b"")
        with self.assertRaises(protocol.TruncatedFrame) as caught:
            reader.next()
        self.assertEqual((caught.exception.expected, caught.exception.received),
                         (200004, 150000))


class WriteFrameTest(unittest.TestCase):

    def test_partial_writes_are_continued_until_the_frame_is_whole(self):
        sink = TrickleSink(chunk=3)
        protocol.write_frame(sink, b"0123456789")
        self.assertEqual(bytes(sink.received), framed(b"0123456789"))
        self.assertEqual(sink.writes, 5)

    def test_writes_to_an_fd(self):
        read_fd, write_fd = os.pipe()
        self.addCleanup(os.close, read_fd)
        protocol.write_message(write_fd, {"id": 1, "ok": True, "result": None})
        os.close(write_fd)
        self.assertEqual(protocol.read_message(read_fd), {"id": 1, "ok": True, "result": None})
        self.assertIsNone(protocol.read_message(read_fd))

    def test_payload_above_the_limit_is_refused_and_nothing_written(self):
        sink = TrickleSink(chunk=1000)
        with self.assertRaises(protocol.FrameTooLarge):
            protocol.write_frame(sink, b"x" * 100, max_frame=99)
        self.assertEqual(bytes(sink.received), b"")

    def test_encode_frame_prefixes_a_big_endian_length(self):
        self.assertEqual(protocol.encode_frame(b"abc"), b"\x00\x00\x00\x03abc")
        self.assertEqual(protocol.decode_header(b"\x01\x02\x03\x04", max_frame=1 << 32),
                         0x01020304)


class MessageCodingTest(unittest.TestCase):

    def test_bytes_stay_bytes_and_strings_stay_strings(self):
        value = {"text": "héllo", "data": b"\x00\xff", "list": [1, None, True, 1.5]}
        self.assertEqual(protocol.unpack(protocol.pack(value)), value)
        self.assertIsInstance(protocol.unpack(protocol.pack(b"x")), bytes)

    def test_maps_with_integer_keys_decode(self):
        self.assertEqual(protocol.unpack(protocol.pack({1: "a", 2: "b"})), {1: "a", 2: "b"})

    def test_trailing_bytes_after_one_object_are_rejected(self):
        with self.assertRaises(ValueError):
            protocol.unpack(protocol.pack(1) + b"\x01")

    def test_cut_msgpack_is_rejected(self):
        with self.assertRaises(ValueError):
            protocol.unpack(protocol.pack("a long enough string")[:5])


if __name__ == "__main__":
    unittest.main()
