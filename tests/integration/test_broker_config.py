"""pyfleet-broker --config FILE: every option from a ZPL file (keys named
like the long flags, under `broker`), flags winning over the file, and a bad
file refused before anything starts, naming the key. Real processes on
127.0.0.1; every wait bounded, every process stopped by its pid.
"""

import os
import re
import subprocess
import unittest

from tests.integration.fleet import (BIN, ROOT, Fleet, Process, RawClient, free_port,
                                     write_config)

BROKER = os.path.join(BIN, "pyfleet-broker")


class BrokerConfig(unittest.TestCase):
    def test_the_file_configures_the_broker_and_flags_override_it(self):
        fleet = Fleet()
        other = "tcp://127.0.0.1:%d" % free_port()
        path = write_config(self, """# pyfleet-broker --config
broker
    bind = %s
    mgmt = %s
    events = none
    timeout = 700
    startup-grace = 0
    log-level = debug
""" % (other, fleet.mgmt))
        # --bind on the command line wins over the file's; the rest is the file's.
        fleet.broker = Process("broker", [BROKER, "--config", path, "--bind", fleet.endpoint])
        self.addCleanup(fleet.stop)
        fleet.broker.wait_for(r"listening on %s \(pid \d+\); management %s; events off"
                              % (re.escape(fleet.endpoint), re.escape(fleet.mgmt)))
        fleet.start_worker(bridges=1)
        client = RawClient(fleet.endpoint)
        self.addCleanup(client.close)
        # log-level = debug: a malformed message is logged.
        client.send_raw([b"", b"XXXX"])
        fleet.broker.wait_for(r"DEBUG broker: malformed message dropped", timeout=5)
        # timeout = 700: a request that sets no deadline gets the file's.
        reply = client.call("test", "sleep", {"seconds": 3})
        self.assertEqual(reply["code"], "TIMEOUT", reply)
        self.assertEqual(fleet.manage("STATUS")[0], "OK")

    def test_the_shipped_example_file_starts_a_broker(self):
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        example = os.path.join(ROOT, "deploy", "broker.zpl")
        broker = Process("broker", [BROKER, "--config", example, "--bind", endpoint,
                                    "--mgmt", "none", "--events", "none"])
        try:
            broker.wait_for(r"listening on %s" % re.escape(endpoint))
        finally:
            self.assertEqual(broker.stop(), 0)

    def test_a_bad_file_is_refused_naming_the_key(self):
        for text, message in [
                ("broker\n    queue-max = many\n",
                 "invalid value 'many' for key 'broker/queue-max': expected an integer"),
                ("broker\n    nonsense = 1\n", "unknown key 'broker/nonsense'"),
                ("worker\n    bridges = 2\n", "unknown section 'worker' (expected 'broker')"),
                ("broker\n    bind =\n", "invalid value '' for key 'broker/bind': must not be empty"),
                ("broker\n    log-level = loud\n", "expected debug, info, warn or error")]:
            path = write_config(self, text)
            done = subprocess.run([BROKER, "--config", path], capture_output=True, timeout=20)
            self.assertEqual(done.returncode, 2, (text, done.stderr))
            self.assertIn(message.encode(), done.stderr)
        done = subprocess.run([BROKER, "--config", "/nonexistent.zpl"], capture_output=True,
                              timeout=20)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"config file '/nonexistent.zpl' not found", done.stderr)


if __name__ == "__main__":
    unittest.main()
