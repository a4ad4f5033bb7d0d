"""pml-vmm against a real libvirtd and QEMU (TCG): a small test guest (a Debian kernel and a busybox
initramfs, tests/integration/test_guest.py) is created, booted, watched, streamed, stopped and
removed with `pmlctl` only; and pml-vmm killed with -9 in the middle of CreateVm is restarted and
reconciles (no orphan domain, no claim held by nothing, the request id can be retried).

Run as root with Debian's /usr/bin/python3; the test starts libvirtd itself when none answers
(tests/integration/libvirtd.py) and stops what it started.
"""
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import libvirtd  # noqa: E402
import test_guest  # noqa: E402

PREFIX = f"it{os.getpid()}"
BASH_COMPOSE = json.dumps({"name": "it", "runner": "bash", "bash_script": "echo hi"},
                          sort_keys=True, separators=(",", ":"))


free_port = harness.free_port


class VmmRealBootTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lv = libvirtd.Libvirtd()
        cls.lv.start()
        cls.stack = harness.Stack()
        cls.images = os.path.join(cls.stack.dir, "images")
        os.makedirs(cls.images)
        shutil.copytree(test_guest.cached_test_image("production"),
                        os.path.join(cls.images, "test-guest"))
        cls.compose = os.path.join(cls.stack.dir, "app-compose.json")
        with open(cls.compose, "w") as f:
            f.write(BASH_COMPOSE)
        cls.vmm = cls.stack.start("vmm", extra_args=cls.vmm_args(
            os.path.join(cls.stack.dir, "vmm-state")))

    @classmethod
    def tearDownClass(cls):
        try:
            libvirtd.cleanup_domains(f"pml-{PREFIX}")
        finally:
            cls.stack.close()
            cls.lv.stop()

    @classmethod
    def vmm_args(cls, state):
        return ["--libvirt-uri", libvirtd.URI, "--state-dir", state, "--images-dir", cls.images,
                "--virt-type", libvirtd.domain_type(), "--stop-timeout-seconds", "30"]

    def ctl(self, *args, addr=None, check=True, timeout=120):
        argv = [harness.binary("tools/pmlctl/pmlctl"), *args, "--addr", addr or self.vmm.addr,
                "--pki-dir", self.stack.pki]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            self.fail(f"pmlctl {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def create(self, name, port, *extra, addr=None, check=True):
        return self.ctl("vm", "create", "--name", name, "--image", "test-guest", "--tee", "none",
                        "--app-compose", self.compose, "--vcpus", "1", "--memory", "256M",
                        "--port", f"tcp:127.0.0.1:{port}:22", "--json", *extra, addr=addr,
                        check=check)

    def test_boot_logs_watch_stop_remove(self):
        name = f"{PREFIX}-boot"
        port = free_port()
        watch = subprocess.Popen(
            [harness.binary("tools/pmlctl/pmlctl"), "vm", "watch", "--json", "--addr",
             self.vmm.addr, "--pki-dir", self.stack.pki],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The watch is subscribed once the server has started its WatchVms call.
            def watch_started():
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{self.vmm.metrics_port}/metrics", timeout=10).read().decode()
                return re.search(r'grpc_server_started_total\{[^}]*grpc_method="WatchVms"[^}]*\} [1-9]',
                                 body)
            harness.wait_for(watch_started, 30, "pmlctl vm watch to subscribe")
            t0 = time.monotonic()
            out = self.create(name, port, "--start", "--request-id", f"{name}-r1")
            vm = json.loads(out.stdout)["vm"]
            self.assertEqual(vm["state"], "VM_STATE_RUNNING", vm)
            self.assertEqual(vm["teeMode"] if "teeMode" in vm else vm["tee_mode"], "TEE_MODE_NONE")
            vm_id = vm["id"]
            self.assertEqual(libvirtd.domain_state(f"pml-{name}"), "running")

            # StreamLogs with follow sees the guest boot (serial console written by QEMU).
            logs = subprocess.Popen(
                [harness.binary("tools/pmlctl/pmlctl"), "vm", "logs", "-f", vm_id, "--addr",
                 self.vmm.addr, "--pki-dir", self.stack.pki],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            seen = b""
            deadline = time.monotonic() + 120
            os.set_blocking(logs.stdout.fileno(), False)
            while test_guest.BOOTED_MARKER.encode() not in seen:
                if time.monotonic() > deadline:
                    self.fail(f"no boot marker in the streamed console: {seen[-2000:]!r}")
                chunk = logs.stdout.read()
                if chunk:
                    seen += chunk
                else:
                    time.sleep(0.1)
            boot_s = time.monotonic() - t0
            logs.terminate()
            logs.wait(timeout=10)
            print(f"\n  create+start to boot marker: {boot_s:.1f} s", file=sys.stderr)

            # The port forward reaches the guest (slirp accepts at once; the guest's server may
            # need a moment after the marker, so retry until it answers).
            deadline = time.monotonic() + 60
            banner = b""
            while test_guest.BANNER.encode() not in banner and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.settimeout(10)
                        banner = s.recv(100)
                except OSError:
                    pass
                if test_guest.BANNER.encode() not in banner:
                    time.sleep(0.5)
            self.assertIn(test_guest.BANNER.encode(), banner)

            # Metrics: VMs by state, GPUs by state, operation latencies.
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{self.vmm.metrics_port}/metrics", timeout=10).read().decode()
            self.assertIn('pml_vmm_vms{state="running"} 1', body)
            self.assertIn('pml_vmm_gpus{state="free"}', body)
            self.assertRegex(body, r'pml_vmm_operation_duration_seconds_count\{operation="create"\} [1-9]')

            # Non-follow logs return the kept output and end.
            out = self.ctl("vm", "logs", vm_id)
            self.assertIn(test_guest.BOOTED_MARKER, out.stdout)

            # ls / get.
            ls = json.loads(self.ctl("vm", "ls", "--json").stdout)
            self.assertIn(vm_id, [v["id"] for v in ls.get("vms", [])])

            # Graceful stop (ACPI power button; the guest powers off).
            t1 = time.monotonic()
            out = self.ctl("vm", "stop", vm_id, "--json")
            self.assertEqual(json.loads(out.stdout)["vm"]["state"], "VM_STATE_STOPPED")
            print(f"  graceful stop: {time.monotonic() - t1:.1f} s", file=sys.stderr)
            self.assertEqual(libvirtd.domain_state(f"pml-{name}"), "shut off")

            self.ctl("vm", "rm", vm_id)
            self.assertIsNone(libvirtd.domain_state(f"pml-{name}"))
            self.assertEqual(os.listdir(os.path.join(self.stack.dir, "vmm-state", "vms")), [])
            out = self.ctl("vm", "get", vm_id, check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("NOT_FOUND", out.stdout + out.stderr)
        finally:
            watch.terminate()
            wout, _ = watch.communicate(timeout=10)
        events = [json.loads(l) for l in wout.splitlines() if l.strip()]
        mine = [(e.get("type"), e.get("vm", {}).get("state")) for e in events
                if e.get("vm", {}).get("name") == name]
        self.assertIn(("VM_EVENT_TYPE_CREATED", "VM_STATE_CREATING"), mine)
        self.assertIn(("VM_EVENT_TYPE_STATE_CHANGED", "VM_STATE_RUNNING"), mine)
        self.assertIn(("VM_EVENT_TYPE_STATE_CHANGED", "VM_STATE_STOPPED"), mine)
        self.assertEqual(mine[-1][0], "VM_EVENT_TYPE_REMOVED")

    def test_kill_9_mid_create_then_restart_reconciles(self):
        state = os.path.join(self.stack.dir, "crash-state")
        name = f"{PREFIX}-crash"
        port = free_port()
        for point in ("after-claim", "after-define"):
            with self.subTest(point=point):
                svc = self._start_named("vmm-crash", state, ["--testing-crash-at", point])
                out = self.create(name, port, "--request-id", f"{name}-req", addr=svc.addr,
                                  check=False)
                self.assertNotEqual(out.returncode, 0)
                svc.proc.wait(timeout=30)
                self.assertEqual(svc.proc.returncode, -signal.SIGKILL)
                self.stack.services.pop("vmm-crash")
                if point == "after-define":
                    self.assertEqual(libvirtd.domain_state(f"pml-{name}"), "shut off")
                svc = self._start_named("vmm-crash", state, [])
                self.assertIsNone(libvirtd.domain_state(f"pml-{name}"))
                ls = json.loads(self.ctl("vm", "ls", "--json", addr=svc.addr).stdout)
                self.assertEqual(ls.get("vms", []), [])
                self.assertIn("cleaned_up=1", svc.log())
                # The same request id now creates the VM, with the same port (its claim was freed).
                out = self.create(name, port, "--request-id", f"{name}-req", addr=svc.addr)
                vm_id = json.loads(out.stdout)["vm"]["id"]
                self.ctl("vm", "rm", vm_id, addr=svc.addr)
                self.assertIsNone(libvirtd.domain_state(f"pml-{name}"))
                self.stack.stop("vmm-crash")

    def _start_named(self, name, state, extra):
        rel, stem = harness.SERVICES["vmm"]
        harness.SERVICES[name] = (rel, stem)
        ready = os.path.join(self.stack.dir, f"{name}.ready")
        if os.path.exists(ready):
            os.remove(ready)
        return self.stack.start(name, extra_args=[*self.vmm_args(state), *extra])

    def test_bad_input_is_refused_and_leaves_nothing(self):
        cases = [
            (["--image", "nope"], "FAILED_PRECONDITION", "unknown image"),
            (["--memory", "0"], "INVALID_ARGUMENT", "memory"),
        ]
        for extra, code, needle in cases:
            with self.subTest(extra=extra):
                argv = ["vm", "create", "--name", f"{PREFIX}-bad", "--image", "test-guest",
                        "--tee", "none", "--app-compose", self.compose, "--memory", "256M"]
                # later flags win in CLI11 for single-value options: replace in place instead
                for i in range(0, len(extra), 2):
                    j = argv.index(extra[i])
                    argv[j + 1] = extra[i + 1]
                out = self.ctl(*argv, check=False)
                self.assertNotEqual(out.returncode, 0)
                self.assertIn(needle, out.stdout + out.stderr)
        for bad_name in ("a;b", "<x>", "a'b"):
            out = self.ctl("vm", "create", "--name", bad_name, "--image", "test-guest", "--tee",
                           "none", "--app-compose", self.compose, check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("name", out.stdout + out.stderr)
        out = self.ctl("vm", "create", "--name", f"{PREFIX}-bad", "--image", "test-guest", "--tee",
                       "none", "--app-compose", self.compose, "--port", "tcp:nope", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertEqual([d for d in libvirtd.list_domains() if d.startswith(f"pml-{PREFIX}-bad")], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
