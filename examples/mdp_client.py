#!/usr/bin/python3
"""Calling pyfleet from any language: a Majordomo (ZeroMQ RFC 7, MDP/0.1)
client in a few lines of pyzmq (docs/PROTOCOL.md 12). No pyfleet library.

  examples/mdp_client.py [tcp://127.0.0.1:5555] [SERVICE]

Asks MMI whether SERVICE (default "demo") is served, then calls its `echo`.
"""
import sys

import msgpack
import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
service = (sys.argv[2] if len(sys.argv) > 2 else "demo").encode()

socket = zmq.Context().socket(zmq.REQ)
socket.setsockopt(zmq.LINGER, 0)
socket.connect(endpoint)


def call(*frames, timeout_ms=35000):
    """One request (REQ adds the empty frame), one answer: its frames after MDPC01."""
    socket.send_multipart([b"MDPC01"] + list(frames))
    if not socket.poll(timeout_ms):
        sys.exit("no answer from %s" % endpoint)
    return socket.recv_multipart()[1:]


print("mmi.service %s: %s" % (service.decode(), call(b"mmi.service", service)[1].decode()))
answer = call(service, b"echo", msgpack.packb({"hello": "from MDP"}))
if answer[1] == b"OK":
    print("echo: %s" % msgpack.unpackb(answer[2]))
else:
    sys.exit("%s: %s" % (answer[1].decode(), answer[2].decode()))
