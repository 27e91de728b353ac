"""CurveZMQ on the broker's endpoint (docs/SECURITY.md): keys made by
`pyfleet keygen`, a broker that admits the keys in a directory, agents and
clients that know the broker's key, sessions owned by the key that made
them. Real processes on 127.0.0.1 and a temporary directory; every wait is
bounded, every process stopped by its pid.
"""

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import msgpack
import zmq
import zmq.auth

from tests.integration.fleet import BIN, PYTHON, Fleet, Process, free_port

PYFLEET = os.path.join(BIN, "pyfleet")


def keygen(directory, name):
    """A certificate DIR/NAME (+ NAME_secret); returns (path, public key)."""
    path = os.path.join(directory, name)
    done = subprocess.run([PYFLEET, "keygen", path, name], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return path, done.stdout.decode().strip()


class Relay:
    """A TCP relay between clients and the broker that keeps every byte it
    carries, to see what an observer of the wire would see."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            broker = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            for a, b in ((client, broker), (broker, client)):
                thread = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pipe(self, source, sink):
        source.settimeout(0.2)
        while not self.stopping:
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            with self.lock:
                self.seen += data
            try:
                sink.sendall(data)
            except OSError:
                break
        try:
            sink.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        source.close()

    def close(self):
        self.stopping = True
        for thread in self.threads:
            thread.join(2)
        self.listener.close()


class CurveFleet(unittest.TestCase):
    """One broker admitting the agent's, alice's and bob's keys, one agent."""

    @classmethod
    def setUpClass(cls):
        cls.keys = tempfile.mkdtemp(prefix="pyfleet-keys-")
        cls.allow = os.path.join(cls.keys, "allowed")
        os.mkdir(cls.allow)
        cls.broker_cert, cls.broker_key = keygen(cls.keys, "broker")
        cls.agent_cert, _ = keygen(cls.keys, "agent")
        cls.alice, _ = keygen(cls.keys, "alice")
        cls.bob, _ = keygen(cls.keys, "bob")
        cls.carol, cls.carol_key = keygen(cls.keys, "carol")
        cls.eve, cls.eve_key = keygen(cls.keys, "eve")
        cls.mallory, cls.mallory_key = keygen(cls.keys, "mallory")
        for name in ("agent", "alice", "bob"):
            shutil.copy(os.path.join(cls.keys, name), cls.allow)
        cls.fleet = Fleet()
        # Also if the set-up fails half way (tearDownClass would not run).
        cls.addClassCleanup(cls.stop_fleet)
        cls.fleet.start_broker("--curve-cert", cls.broker_cert, "--curve-allow", cls.allow,
                               "--startup-grace", "0")
        # The default heartbeat (3 s of silence allowed): a tighter one lost
        # the agent under valgrind. Only the intruder below beats fast.
        cls.fleet.start_worker(service="test", bridges=1, args=[
            "--curve-cert", cls.agent_cert, "--broker-key", cls.broker_cert])

    @classmethod
    def stop_fleet(cls):
        statuses = cls.fleet.stop()
        shutil.rmtree(cls.keys, ignore_errors=True)
        # Exit 0 also means no leak or memory error under ASan.
        assert all(status == 0 for status in statuses), statuses

    def call(self, cert, *args, broker_key=None, endpoint=None, timeout=5000):
        argv = [PYFLEET, "call", "--broker", endpoint or self.fleet.endpoint,
                "--timeout", str(timeout)]
        if cert:
            argv += ["--curve-cert", cert, "--broker-key", broker_key or self.broker_key]
        started = time.monotonic()
        done = subprocess.run(argv + list(args), capture_output=True, timeout=30)
        return (done.returncode, done.stdout.decode(), done.stderr.decode(),
                time.monotonic() - started)

    def test_an_admitted_client_is_served_and_the_wire_carries_no_plain_text(self):
        relay = Relay(int(self.fleet.endpoint.rsplit(":", 1)[1]))
        self.addCleanup(relay.close)
        marker = "plain-text-marker-%d" % os.getpid()
        rc, out, err, _ = self.call(self.alice, "test", "echo", '{"m": "%s"}' % marker,
                                    endpoint="tcp://127.0.0.1:%d" % relay.port)
        self.assertEqual(rc, 0, err)
        self.assertIn(marker, out)
        with relay.lock:
            seen = bytes(relay.seen)
        # The greeting names the mechanism in clear; nothing after it is.
        self.assertIn(b"CURVE", seen)
        self.assertGreater(len(seen), 2 * len(marker))
        self.assertNotIn(marker.encode(), seen)
        self.assertNotIn(b"echo", seen)

    def test_an_mdp_client_with_an_admitted_key_is_served(self):
        public, secret = zmq.auth.load_certificate(self.alice + "_secret")
        socket = zmq.Context.instance().socket(zmq.REQ)
        self.addCleanup(socket.close, 0)
        socket.setsockopt(zmq.LINGER, 0)
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_serverkey = self.broker_key.encode()
        socket.connect(self.fleet.endpoint)
        socket.send_multipart([b"MDPC01", b"test", b"echo", msgpack.packb({"mdp": 1})])
        self.assertTrue(socket.poll(10000), "no MDP answer")
        frames = socket.recv_multipart()
        self.assertEqual(frames[:3], [b"MDPC01", b"test", b"OK"])
        self.assertEqual(msgpack.unpackb(frames[3]), {"mdp": 1})

    def test_a_key_not_admitted_is_refused_at_once_with_unauthorized(self):
        rc, _, err, took = self.call(self.eve, "test", "echo", "{}", timeout=10000)
        self.assertEqual(rc, 11, err)
        self.assertIn("UNAUTHORIZED", err)
        self.assertIn("refused this client's CurveZMQ key", err)
        self.assertLess(took, 5, "refused at the handshake, not at the 10 s deadline")
        self.fleet.broker.wait_for(r"refused a CURVE handshake from 127\.0\.0\.1: key %s is not "
                                   r"allowed" % re.escape(self.eve_key), timeout=5)

    def test_a_client_without_keys_is_refused_with_unauthorized(self):
        rc, _, err, took = self.call(None, "test", "echo", "{}", timeout=10000)
        self.assertEqual(rc, 11, err)
        self.assertIn("disagree on CurveZMQ", err)
        # The broker logs it only if it read the client's greeting before the
        # client, having read the broker's, hung up: not asserted.
        self.assertLess(took, 5)

    def test_a_wrong_broker_key_times_out_and_says_what_to_check(self):
        rc, _, err, _ = self.call(self.alice, "test", "echo", "{}", broker_key=self.bob,
                                  timeout=800)
        self.assertEqual(rc, 3, err)
        self.assertIn("no CurveZMQ handshake completed: is the broker key right?", err)
        self.fleet.broker.wait_for(r"a handshake on tcp://\S+ failed: cryptographic error",
                                   timeout=5)

    def test_a_key_added_to_the_directory_is_admitted_without_a_restart(self):
        rc, _, err, _ = self.call(self.carol, "test", "echo", "{}")
        self.assertEqual(rc, 11, err)
        shutil.copy(self.carol, self.allow)
        self.addCleanup(os.unlink, os.path.join(self.allow, "carol"))
        rc, out, err, _ = self.call(self.carol, "test", "echo", '{"in": true}')
        self.assertEqual((rc, out.strip()), (0, '{"in":true}'), err)

    def test_a_file_in_the_directory_that_is_no_certificate_is_skipped_with_a_warning(self):
        junk = os.path.join(self.allow, "notes.txt")
        with open(junk, "w") as handle:
            handle.write("\x01 these are not keys\n")
        self.addCleanup(os.unlink, junk)
        rc, out, err, _ = self.call(self.alice, "test", "echo", '{"still": "in"}')
        self.assertEqual((rc, out.strip()), (0, '{"still":"in"}'), err)
        self.fleet.broker.wait_for(r"--curve-allow: ignored .*notes\.txt is not a CurveZMQ "
                                   r"certificate", timeout=5)
        self.fleet.broker.wait_for(r"--curve-allow: 3 keys admitted from 4 files", timeout=5)

    def test_a_session_belongs_to_the_key_that_made_it(self):
        session = "owned-%d" % os.getpid()
        rc, out, err, _ = self.call(self.alice, "--session", session, "test", "echo", '{"n": 1}')
        self.assertEqual(rc, 0, err)
        rc, _, err, _ = self.call(self.bob, "--session", session, "test", "echo", '{"n": 2}')
        self.assertEqual(rc, 11, err)
        self.assertIn("this session belongs to another client key", err)
        # Ending it is the owner's too: session_end outside the session is refused.
        rc, _, err, _ = self.call(self.bob, "test", "session_end", '{"session": "%s"}' % session)
        self.assertEqual(rc, 10, err)
        self.assertIn("session_end ends the session it is sent in", err)
        rc, out, err, _ = self.call(self.alice, "--session", session, "test", "session_end")
        self.assertEqual((rc, out.strip()), (0, '{"ended":true}'), err)
        # Bob's own sessions work as ever.
        rc, out, err, _ = self.call(self.bob, "--session", "bob-%d" % os.getpid(), "test",
                                    "echo", '{"n": 3}')
        self.assertEqual((rc, out.strip()), (0, '{"n":3}'), err)

    def test_workers_names_each_agents_key(self):
        status, body = self.fleet.manage("WORKERS")
        self.assertEqual(status, "OK")
        key = body["agents"][0]["key"]
        self.assertEqual(len(key), 40)
        with open(self.agent_cert) as public:
            self.assertIn('public-key = "%s"' % key, public.read())
        self.fleet.broker.wait_for(r"pid \d+, key %s\) ready for 'test'" % re.escape(key))

    def test_an_agent_whose_key_is_not_admitted_never_registers(self):
        argv = [os.path.join(BIN, "pyfleet-worker"), "--broker", self.fleet.endpoint,
                "--service", "intruder", "--bridges", "1", "--python", PYTHON,
                "--curve-cert", self.mallory, "--broker-key", self.broker_key, "--heartbeat", "200"]
        intruder = Process("intruder", argv)
        try:
            intruder.wait_for(r"broker connection lost .*CurveZMQ: is key %s admitted"
                              % re.escape(self.mallory_key), timeout=10)
            self.fleet.broker.wait_for(r"refused a CURVE handshake from 127\.0\.0\.1: key %s"
                                       % re.escape(self.mallory_key), timeout=5)
            status, body = self.fleet.manage("STATUS")
            self.assertEqual(status, "OK")
            self.assertEqual(body["agents"], 1, body)
            rc, _, err, _ = self.call(self.alice, "intruder", "echo", "{}", timeout=500)
            self.assertEqual(rc, 6, err)
        finally:
            self.assertEqual(intruder.stop(), 0)


class CurveConfig(unittest.TestCase):
    """Bad keys and options are refused before anything starts."""

    def setUp(self):
        self.keys = tempfile.mkdtemp(prefix="pyfleet-keys-")
        self.addCleanup(shutil.rmtree, self.keys, True)
        self.cert, self.key = keygen(self.keys, "one")

    def run_bin(self, name, *args):
        done = subprocess.run([os.path.join(BIN, name)] + list(args), capture_output=True,
                              timeout=20)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def test_keygen_writes_a_private_secret_and_never_replaces_a_file(self):
        mode = stat.S_IMODE(os.stat(self.cert + "_secret").st_mode)
        self.assertEqual(mode, 0o600)
        with open(self.cert) as public:
            text = public.read()
        self.assertIn(self.key, text)
        self.assertNotIn("secret-key", text)
        rc, _, err = self.run_bin("pyfleet", "keygen", self.cert)
        self.assertEqual(rc, 1)
        self.assertIn("exists already; not replaced", err)
        with open(self.cert) as public:
            self.assertEqual(public.read(), text)

    def test_the_broker_refuses_bad_curve_options(self):
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        common = ["--bind", endpoint, "--mgmt", "none", "--events", "none"]
        cases = [
            (["--curve-cert", self.cert], "--curve-cert needs --curve-allow"),
            (["--curve-allow", "any"], "--curve-allow needs --curve-cert"),
            (["--curve-cert", os.path.join(self.keys, "none"), "--curve-allow", "any"],
             "no certificate at"),
            (["--curve-cert", self.cert, "--curve-allow", os.path.join(self.keys, "nodir")],
             "no directory"),
        ]
        os.unlink(self.cert + "_secret")
        cases.append((["--curve-cert", self.cert, "--curve-allow", "any"], "has no secret key"))
        for args, message in cases:
            rc, _, err = self.run_bin("pyfleet-broker", *(common + args))
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(message, err)

    def test_the_worker_and_the_client_refuse_bad_keys(self):
        for args, message in [
                (["--curve-cert", self.cert], "--curve-cert needs --broker-key"),
                (["--broker-key", "not-a-key"], "neither a Z85 key"),
                (["--broker-key", "x" * 39 + "~"], "neither a Z85 key"),
                (["--broker-key", self.keys], "not a CurveZMQ certificate"),
                (["--curve-cert", self.keys + "/missing", "--broker-key", self.key],
                 "no certificate at")]:
            rc, _, err = self.run_bin("pyfleet-worker", "--broker", "tcp://127.0.0.1:1",
                                      "--python", PYTHON, *args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(message, err)
        for args, message in [
                (["--curve-cert", self.cert], "needs both"),
                (["--curve-cert", self.cert, "--broker-key", "bad"], "neither a Z85 key"),
                (["--curve-cert", self.keys + "/missing", "--broker-key", self.key],
                 "no certificate at")]:
            rc, _, err = self.run_bin("pyfleet", "call", "--broker", "tcp://127.0.0.1:1",
                                      *(args + ["svc", "echo"]))
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(message, err)


if __name__ == "__main__":
    unittest.main()
