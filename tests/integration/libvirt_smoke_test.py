"""Smoke test of the guest-boot test infrastructure (issue 8): a real libvirtd (libvirtd.py) and the
tiny test guest (test_guest.py), without pml-vmm.
 - the test image builds byte-identically twice (vmlinuz, initramfs.cpio.gz, metadata.json), and
   its metadata's os_image_hash is the SHA-256 of `sha256sum`'s output for its files;
 - a persistent type='qemu' (TCG unless PML_USE_KVM=1) q35 domain with direct kernel boot, serial
   console to a file and QEMU user networking with a hostfwd passed through <qemu:commandline>
   is defined and started; the console shows the boot marker, the image's cmdline and heartbeats;
 - the forwarded host port accepts a TCP connection and relays the guest's banner;
 - `virsh shutdown --mode acpi` (power button) stops it; it is undefined and nothing is left.
Prints boot-to-marker and shutdown seconds.

Run as root: /usr/bin/python3 tests/integration/libvirt_smoke_test.py
(needs libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 busybox-static
linux-image-amd64)
"""
import filecmp
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import libvirtd  # noqa: E402
import test_guest  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def domain_xml(name, image_dir, console_log, host_port, dom_type="qemu", memory_mib=256):
    meta = test_guest.read_metadata(image_dir)
    kernel = os.path.join(image_dir, meta["kernel"])
    initrd = os.path.join(image_dir, meta["initrd"])
    netdev = f"user,id=pmlnet0,hostfwd=tcp:127.0.0.1:{host_port}-:{test_guest.GUEST_PORT}"
    # romfile= : no iPXE option ROM (direct kernel boot needs none; it only costs boot time).
    device = "virtio-net-pci,netdev=pmlnet0,romfile="
    ns = "http://libvirt.org/schemas/domain/qemu/1.0"
    return f"""<domain type={quoteattr(dom_type)} xmlns:qemu='{ns}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>{escape(meta["cmdline"])}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path={quoteattr(console_log)}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={quoteattr(console_log)}/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value={quoteattr(netdev)}/>
    <qemu:arg value='-device'/>
    <qemu:arg value={quoteattr(device)}/>
  </qemu:commandline>
</domain>
"""


def wait_state(name, want, timeout):
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        st = libvirtd.domain_state(name)
        if st == want:
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name} is {st!r}, not {want!r}, after {timeout}s")
        time.sleep(0.1)


def read_banner(port, timeout):
    """Connects to 127.0.0.1:port and returns the first line the guest sends (slirp accepts at
    once even while the guest isn't listening yet and then closes: retried until the deadline)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    return data.decode(errors="replace").splitlines()[0]
                last = "connection closed without data"
        except OSError as e:
            last = repr(e)
        time.sleep(0.2)
    raise TimeoutError(f"no banner on 127.0.0.1:{port} within {timeout}s ({last})")


class LibvirtSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lv = libvirtd.Libvirtd()
        cls.lv.start()
        cls.prefix = f"pml-smoke-{os.getpid()}-"
        cls.dir = tempfile.mkdtemp(prefix="pml-libvirt-smoke-")
        os.chmod(cls.dir, 0o755)
        print(f"\nlibvirtd {'reused' if cls.lv.reused else 'started here'}; "
              f"domain type {libvirtd.domain_type()}", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        try:
            libvirtd.cleanup_domains(cls.prefix)
        finally:
            cls.lv.stop()
            shutil.rmtree(cls.dir, ignore_errors=True)

    def test_1_image_builds_reproducibly(self):
        a = test_guest.build_test_image(os.path.join(self.dir, "a"), "production")
        time.sleep(1.1)  # a different wall clock second: mtimes must not leak into the output
        b = test_guest.build_test_image(os.path.join(self.dir, "b"), "production")
        names = sorted(os.listdir(a))
        self.assertEqual(names, ["initramfs.cpio.gz", "metadata.json", "vmlinuz"])
        self.assertEqual(names, sorted(os.listdir(b)))
        match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
        self.assertEqual((mismatch, errors), ([], []))
        meta = test_guest.read_metadata(a)
        self.assertEqual(set(meta), {"version", "variant", "kernel", "initrd", "cmdline", "files",
                                     "os_image_hash"})
        self.assertEqual((meta["version"], meta["variant"], meta["kernel"], meta["initrd"]),
                         ("test-1", "production", "vmlinuz", "initramfs.cpio.gz"))
        self.assertEqual(set(meta["files"]), {"vmlinuz", "initramfs.cpio.gz"})
        sums = subprocess.run(["sha256sum", "initramfs.cpio.gz", "vmlinuz"], cwd=a, check=True,
                              capture_output=True, text=True).stdout
        self.assertEqual(meta["os_image_hash"], hashlib.sha256(sums.encode()).hexdigest())
        for n, v in meta["files"].items():
            self.assertEqual(v["size"], os.path.getsize(os.path.join(a, n)))
            self.assertRegex(v["sha256"], "^[0-9a-f]{64}$")
        self.assertTrue(test_guest.image_intact(a))
        # The development variant differs (in the initramfs), the cache returns an intact copy.
        cache = os.path.join(self.dir, "c")
        dev = test_guest.build_test_image(None, "development", cache_dir=cache)
        self.assertEqual(dev, test_guest.build_test_image(None, "development", cache_dir=cache))
        dmeta = test_guest.read_metadata(dev)
        self.assertEqual(dmeta["variant"], "development")
        self.assertEqual(dmeta["files"]["vmlinuz"], meta["files"]["vmlinuz"])
        self.assertNotEqual(dmeta["os_image_hash"], meta["os_image_hash"])

    def test_2_guest_boots_forwards_a_port_and_shuts_down_on_acpi(self):
        image = test_guest.build_test_image(os.path.join(self.dir, "img"), "production")
        meta = test_guest.read_metadata(image)
        name = self.prefix + "guest"
        console = os.path.join(self.dir, "console.log")
        port = free_port()
        xml_path = os.path.join(self.dir, "domain.xml")
        with open(xml_path, "w") as f:
            f.write(domain_xml(name, image, console, port, libvirtd.domain_type()))
        self.lv.virsh("define", xml_path)
        dumped = self.lv.virsh("dumpxml", name).stdout
        self.assertIn("hostfwd=tcp:127.0.0.1:%d-:22" % port, dumped)

        t0 = time.monotonic()
        self.lv.virsh("start", name)
        running = lambda: libvirtd.domain_state(name) == "running"  # noqa: E731
        boot_s = test_guest.wait_for_console(console, test_guest.BOOTED_MARKER, 60,
                                             proc_alive=running)
        boot_total = time.monotonic() - t0
        test_guest.wait_for_console(console, test_guest.HEARTBEAT_PREFIX + "2", 20,
                                    proc_alive=running)
        with open(console, errors="replace") as f:
            out = f.read()
        self.assertIn(test_guest.CMDLINE_PREFIX + meta["cmdline"], out)
        self.assertIn("pml-test-guest: variant production", out)

        # QEMU's slirp listens on the host side itself: a TCP connect succeeds at once.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        # ...and relays to the guest's port 22.
        self.assertEqual(read_banner(port, 30), test_guest.BANNER)

        t1 = time.monotonic()
        self.lv.virsh("shutdown", name, "--mode", "acpi")
        wait_state(name, "shut off", 30)
        shutdown_s = time.monotonic() - t1
        with open(console, errors="replace") as f:
            self.assertIn("pml-test-guest: power button, powering off", f.read())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

        self.lv.virsh("undefine", name)
        self.assertNotIn(name, libvirtd.list_domains())
        self.assertIsNone(libvirtd.domain_state(name))
        left = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True)
        self.assertEqual(left.stdout.strip(), "", "a qemu process is left")
        print(f"\nboot: virsh start -> '{test_guest.BOOTED_MARKER}' {boot_total:.1f}s "
              f"(console poll {boot_s:.1f}s); shutdown: virsh shutdown -> shut off "
              f"{shutdown_s:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
