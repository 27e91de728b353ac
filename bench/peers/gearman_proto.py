"""A minimal Gearman binary-protocol client and worker (http://gearman.org/protocol/).

Debian ships gearman-job-server but no Python binding, so the benchmark
carries the few packets it needs.  A packet is a 12-byte header -- magic
"\\0REQ" (to the server) or "\\0RES" (from it), a big-endian u32 type, a
big-endian u32 size -- then `size` bytes of arguments separated by NUL
(the last argument may contain anything, including NUL).

Client: SUBMIT_JOB(function, unique, data) -> JOB_CREATED(handle), later
WORK_COMPLETE(handle, data) or WORK_FAIL(handle).  Several jobs are
pipelined on one connection; JOB_CREATED answers come back in submission
order, which is how a handle is matched to its request.

Worker: CAN_DO(function) once per function, then GRAB_JOB -> JOB_ASSIGN
(handle, function, data) or NO_JOB; on NO_JOB it sends PRE_SLEEP and waits
for NOOP before grabbing again.
"""

import socket
import struct

REQ = b"\0REQ"
RES = b"\0RES"
HEADER = struct.Struct(">4sII")

CAN_DO = 1
PRE_SLEEP = 4
NOOP = 6
SUBMIT_JOB = 7
JOB_CREATED = 8
GRAB_JOB = 9
NO_JOB = 10
JOB_ASSIGN = 11
WORK_COMPLETE = 13
WORK_FAIL = 14
ERROR = 19

MAX_PACKET = 128 * 1024 * 1024


class GearmanError(Exception):
    pass


def packet(ptype, *args):
    body = b"\0".join(args)
    return HEADER.pack(REQ, ptype, len(body)) + body


class Connection:
    """A TCP connection to gearmand that reads whole response packets."""

    def __init__(self, host, port, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise GearmanError("gearmand closed the connection")
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def packets(self):
        """Read at least one packet; return every complete one as (type, body)."""
        out = []
        while not out:
            self._fill()
            buf = self.buf
            while len(buf) - self.pos >= 12:
                magic, ptype, size = HEADER.unpack_from(buf, self.pos)
                if magic != RES or size > MAX_PACKET:
                    raise GearmanError("bad packet header %r type %d size %d" % (magic, ptype, size))
                end = self.pos + 12 + size
                if len(buf) < end:
                    break
                out.append((ptype, bytes(buf[self.pos + 12:end])))
                self.pos = end
        return out
