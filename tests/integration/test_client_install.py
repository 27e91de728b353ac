"""`cmake --install` gives a usable pyfleet: the example in examples/client
builds out of tree against the installed pyfleet.pc (shared and static) and
runs against a fleet started from the installed binaries, whose worker finds
the installed bridge package by itself."""

import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from tests.integration.fleet import BUILD, PYTHON, ROOT, Process, free_port


def sanitized_build():
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as cache:
            return "PYFLEET_SANITIZE:BOOL=ON" in cache.read()
    except FileNotFoundError:
        return False


def worker_uses_installed_default():
    """True once the worker takes its default bridge path from common/pf_paths.c."""
    with open(os.path.join(ROOT, "worker", "pf_agent.c")) as source:
        return "pf_default_python_path ()" in source.read()


class InstalledExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pyfleet-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", cls.prefix], check=True,
                       capture_output=True, timeout=60)
        cls.pc_dir = glob.glob(os.path.join(cls.prefix, "lib*", "pkgconfig"))[0]
        cls.example = os.path.join(cls.tmp, "example")
        shutil.copytree(os.path.join(ROOT, "examples", "client"), cls.example)
        env = dict(os.environ, PKG_CONFIG_PATH=cls.pc_dir)
        if sanitized_build():
            env["CFLAGS"] = "-O1 -g -fsanitize=address,undefined"
        cls.make = subprocess.run(["make", "-C", cls.example, "all", "static"], env=env,
                                  capture_output=True, timeout=120)
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        cls.endpoint = endpoint
        bin_dir = os.path.join(cls.prefix, "bin")
        cls.broker = Process("broker", [os.path.join(bin_dir, "pyfleet-broker"), "--bind",
                                        endpoint])
        cls.worker = None
        cls.broker.wait_for("listening on")
        cls.worker = Process("worker", [os.path.join(bin_dir, "pyfleet-worker"), "--broker",
                                        endpoint, "--service", "demo", "--bridges", "2",
                                        "--python", PYTHON])
        cls.worker.wait_for(r"-> ready after", count=2, timeout=30)
        cls.broker.wait_for(r"ready for 'demo'", timeout=10)

    @classmethod
    def tearDownClass(cls):
        for process in (cls.worker, cls.broker):
            if process:
                process.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_install_puts_header_libraries_pkgconfig_binaries_and_bridge_package(self):
        for path in ["include/pyfleet.h", "include/pf_error.h", "bin/pyfleet",
                     "bin/pyfleet-broker", "bin/pyfleet-worker",
                     "share/pyfleet/python/pyfleet_bridge/__main__.py"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, path)), path)
        libdir = os.path.dirname(self.pc_dir)
        self.assertTrue(os.path.exists(os.path.join(libdir, "libpyfleet.a")))
        self.assertTrue(os.path.exists(os.path.join(self.pc_dir, "pyfleet.pc")))
        dynamic = subprocess.run(["readelf", "-d", os.path.join(libdir, "libpyfleet.so")],
                                 capture_output=True, text=True, check=True).stdout
        self.assertRegex(dynamic, r"SONAME.*\[libpyfleet\.so\.\d+\]")

    def test_example_builds_out_of_tree_with_pkg_config(self):
        self.assertEqual(self.make.returncode, 0, self.make.stderr.decode())

    def run_example(self, name):
        self.assertEqual(self.make.returncode, 0, self.make.stderr.decode())
        done = subprocess.run([os.path.join(self.example, name), self.endpoint, "demo"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(done.stdout.strip().splitlines()[-1], "OK")
        self.assertIn("pipelined: 1000 of 1000 answered", done.stdout)
        return done.stdout

    def test_shared_example_runs_against_the_installed_fleet(self):
        out = self.run_example("hello")
        self.assertIn('echo: {"text":"hello"}', out)
        self.assertIn('session_end: {"ended":true}', out)

    @unittest.skipUnless(worker_uses_installed_default(),
                         "worker/pf_agent.c does not call pf_default_python_path () yet")
    def test_installed_worker_runs_the_installed_bridge_package(self):
        out = self.run_example("hello")
        # The bridge that answered runs the installed package, not the sources.
        pid = int(re.search(r'"pid":(\d+)', out).group(1))
        with open("/proc/%d/environ" % pid, "rb") as environ:
            variables = dict(item.split(b"=", 1) for item in environ.read().split(b"\0")
                             if b"=" in item)
        installed = os.path.join(self.prefix, "share", "pyfleet", "python").encode()
        self.assertTrue(variables[b"PYTHONPATH"].startswith(installed), variables[b"PYTHONPATH"])

    def test_static_example_runs_against_the_installed_fleet(self):
        self.run_example("hello-static")

    def test_installed_cli_calls_the_fleet(self):
        done = subprocess.run([os.path.join(self.prefix, "bin", "pyfleet"), "call", "--broker",
                               self.endpoint, "demo", "echo", '{"a": 1}'],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), '{"a":1}')


if __name__ == "__main__":
    unittest.main()
