"""The guest image builder (deploy/image/build_image.py, issue 9):
 - production built twice into fresh directories gives byte-identical vmlinuz, initramfs.cpio.gz
   and metadata.json;
 - development differs: its metadata says "variant": "development", its initramfs and so its
   os_image_hash differ, the kernel is the same;
 - metadata.json keeps services/vmm/inventory.h's contract: every listed file's size and SHA-256
   match, os_image_hash is the SHA-256 of what coreutils' `sha256sum` prints for the files in name
   order (computed here independently of the builder), names and fields are well-formed;
 - the initramfs (read back here) is reproducible by construction (sorted entries, uid/gid 0,
   mtime 0) and holds /init, pml-guest-agent with every library `ldd` names for it, bash, openssl,
   the virtio and 9p modules, the ACPI power-button handler, and dropbear only in development.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/image_test.py
(needs the built pml-guest-agent, linux-image-amd64, busybox-static, bash, openssl, binutils,
ca-certificates and dropbear-bin; about 25 s)
"""
import filecmp
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("PML_BUILD_DIR", os.path.join(ROOT, "build")))
AGENT = os.path.join(BUILD_DIR, "services", "guest-agent", "pml-guest-agent")
BUILDER = os.path.join(ROOT, "deploy", "image", "build_image.py")
FILES = ("initramfs.cpio.gz", "metadata.json", "vmlinuz")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


def build(variant, out):
    r = subprocess.run([sys.executable, BUILDER, "--variant", variant, "--out", out,
                        "--agent", AGENT], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"build_image.py --variant {variant} failed (rc={r.returncode}):\n"
                             f"{r.stdout}{r.stderr}")
    return out


def read_cpio(path):
    """{name: (mode, data, uid, gid, mtime)} in archive order, parsed here (not with the builder's
    reader) from the gzip'd newc archive."""
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    out = {}
    off = 0
    while True:
        hdr = data[off:off + 110]
        assert hdr[:6] == b"070701", f"bad cpio magic at {off}"
        fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, mtime, size, namesize = (fields[1], fields[2], fields[3], fields[5],
                                                 fields[6], fields[11])
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        body = data[off:off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, uid, gid, mtime)


def resolve(entries, path, depth=0):
    """The archive entry name path leads to, following the archive's symlinks (None if
    dangling)."""
    assert depth < 40, f"symlink loop at {path}"
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(len(parts)):
        cur = "/".join(parts[:i + 1])
        e = entries.get(cur)
        if e is None:
            return None
        if stat.S_ISLNK(e[0]):
            target = e[1].decode()
            base = "/" if target.startswith("/") else "/" + "/".join(parts[:i])
            new = os.path.normpath(os.path.join(base, target, *parts[i + 1:]))
            return resolve(entries, new, depth + 1)
    return "/".join(parts)


def ldd(binary):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    libs = set()
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*\S+\s+=>\s+(/\S+)", line) or re.match(r"^\s*(/\S+)\s+\(", line)
        if m:
            libs.add(m.group(1))
    return libs


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(AGENT, os.X_OK):
            raise RuntimeError(f"{AGENT} not built (set PML_BUILD_DIR)")
        cls.dir = tempfile.mkdtemp(prefix="pml-image-test-")
        cls.prod_a = build("production", os.path.join(cls.dir, "prod-a"))
        cls.prod_b = build("production", os.path.join(cls.dir, "prod-b"))
        cls.dev = build("development", os.path.join(cls.dir, "dev"))
        cls.meta = {}
        cls.cpio = {}
        for d in (cls.prod_a, cls.prod_b, cls.dev):
            with open(os.path.join(d, "metadata.json")) as f:
                cls.meta[d] = json.load(f)
        for d in (cls.prod_a, cls.dev):
            cls.cpio[d] = read_cpio(os.path.join(d, "initramfs.cpio.gz"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_production_builds_are_byte_identical(self):
        self.assertEqual(sorted(os.listdir(self.prod_a)), list(FILES))
        self.assertEqual(sorted(os.listdir(self.prod_b)), list(FILES))
        for n in FILES:
            self.assertTrue(filecmp.cmp(os.path.join(self.prod_a, n), os.path.join(self.prod_b, n),
                                        shallow=False), f"{n} differs between two builds")
        self.assertEqual(self.meta[self.prod_a], self.meta[self.prod_b])

    def test_development_differs(self):
        p, d = self.meta[self.prod_a], self.meta[self.dev]
        self.assertEqual(p["variant"], "production")
        self.assertEqual(d["variant"], "development")
        self.assertNotEqual(p["os_image_hash"], d["os_image_hash"])
        self.assertNotEqual(p["files"]["initramfs.cpio.gz"]["sha256"],
                            d["files"]["initramfs.cpio.gz"]["sha256"])
        self.assertEqual(p["files"]["vmlinuz"], d["files"]["vmlinuz"])
        self.assertEqual(p["version"], d["version"])

    def test_metadata_contract(self):
        for image in (self.prod_a, self.dev):
            meta = self.meta[image]
            with self.subTest(image=image):
                self.assertIsInstance(meta["version"], str)
                self.assertTrue(1 <= len(meta["version"]) <= 64)
                self.assertTrue(meta["version"].isprintable())
                self.assertIn(meta["variant"], ("production", "development"))
                self.assertEqual(meta["kernel"], "vmlinuz")
                self.assertEqual(meta["initrd"], "initramfs.cpio.gz")
                self.assertIsInstance(meta["cmdline"], str)
                self.assertLessEqual(len(meta["cmdline"].encode()), 4096)
                self.assertFalse(any(ord(c) < 0x20 or ord(c) == 0x7f for c in meta["cmdline"]))
                self.assertIn("console=ttyS0", meta["cmdline"])
                self.assertIsNone(meta.get("firmware"))  # this image is not TDX-capable
                files = meta["files"]
                self.assertLessEqual(len(files), 64)
                self.assertIn(meta["kernel"], files)
                self.assertIn(meta["initrd"], files)
                for n, v in files.items():
                    self.assertRegex(n, NAME)
                    self.assertNotIn("..", n)
                    p = os.path.join(image, n)
                    self.assertTrue(os.path.isfile(p) and not os.path.islink(p), n)
                    self.assertEqual(os.path.getsize(p), v["size"], n)
                    with open(p, "rb") as f:
                        self.assertEqual(hashlib.sha256(f.read()).hexdigest(), v["sha256"], n)
                    self.assertRegex(v["sha256"], HEX64)
                # os_image_hash = SHA-256 of `sha256sum`'s output for the files, in name order.
                names = sorted(files, key=lambda s: s.encode())
                text = subprocess.run(["sha256sum", "--", *names], cwd=image, check=True,
                                      capture_output=True).stdout
                self.assertEqual(text, "".join(f"{files[n]['sha256']}  {n}\n"
                                               for n in names).encode())
                self.assertRegex(meta["os_image_hash"], HEX64)
                self.assertEqual(meta["os_image_hash"], hashlib.sha256(text).hexdigest())
                # No timestamps and no build paths in metadata.json.
                with open(os.path.join(image, "metadata.json")) as f:
                    raw = f.read()
                self.assertNotIn(self.dir, raw)
                self.assertNotIn(BUILD_DIR, raw)

    def test_initramfs_is_reproducible_by_construction(self):
        for image in (self.prod_a, self.dev):
            entries = self.cpio[image]
            with self.subTest(image=image):
                names = list(entries)
                self.assertEqual(names, sorted(names), "entries are not sorted")
                for n, (mode, data, uid, gid, mtime) in entries.items():
                    self.assertEqual((uid, gid, mtime), (0, 0, 0), n)
                init = entries["init"][1].decode()
                self.assertNotIn(self.dir, init)
                self.assertNotIn(BUILD_DIR, init)

    def check_common(self, entries, variant):
        def regular(path):
            name = resolve(entries, path)
            self.assertIsNotNone(name, f"{path} missing or dangling")
            mode = entries[name][0]
            self.assertTrue(stat.S_ISREG(mode), f"{path} is not a regular file")
            return name, mode, entries[name][1]

        _, mode, init = regular("/init")
        self.assertTrue(mode & 0o111, "/init is not executable")
        init = init.decode()
        self.assertTrue(init.startswith("#!/bin/sh\n"))
        self.assertIn(f'say "variant {variant}', init)
        self.assertIn("mount -t 9p -o trans=virtio,version=9p2000.L,ro pml-config /run/pml/config",
                      init)
        self.assertIn("ip route add default via 10.0.2.2", init)
        self.assertIn("NO TDX: the guest agent uses the SIMULATED TEE (development only)", init)
        self.assertIn("pml-guest-agent boot --run-app --tee \"$tee\"", init)
        for flag in ("--state-dir /run/pml/agent", "--config-dir /run/pml/config",
                     "--grpc-socket /var/run/pml-guest.sock",
                     "--dstack-socket /var/run/dstack.sock", "--tappd-socket /var/run/tappd.sock",
                     "--metrics-listen 0.0.0.0:9464"):
            self.assertIn(flag, init)
        self.assertIn("guest agent exited with", init)
        regular("/bin/sh")  # busybox
        regular("/bin/busybox")
        regular("/bin/bash")  # the agent's bash runner execs /bin/bash
        regular("/usr/bin/env")
        regular("/bin/sleep")
        regular("/usr/bin/openssl")
        regular("/etc/ssl/openssl.cnf")
        _, mode, _ = regular("/usr/bin/pml-guest-agent")
        self.assertTrue(mode & 0o111)
        _, mode, _ = regular("/etc/acpi/power")
        self.assertTrue(mode & 0o111)
        regular("/etc/acpid.conf")
        regular("/lib64/ld-linux-x86-64.so.2")
        for b in (AGENT, "/bin/bash", "/usr/bin/openssl"):
            for lib in ldd(b):
                regular(lib)
        mods = {os.path.basename(n) for n in entries if n.endswith(".ko")}
        for m in ("9p.ko", "9pnet.ko", "9pnet_virtio.ko", "virtio_pci.ko", "virtio_net.ko",
                  "virtio_blk.ko", "virtio-rng.ko", "button.ko", "evdev.ko"):
            self.assertIn(m, mods)
        _, _, modlist = regular("/etc/pml/modules")
        for line in modlist.decode().split():
            regular(line)
        load = [os.path.basename(p) for p in modlist.decode().split()]
        self.assertLess(load.index("9pnet.ko"), load.index("9pnet_virtio.ko"))
        self.assertLess(load.index("virtio.ko"), load.index("virtio_pci.ko"))
        self.assertLess(load.index("9pnet_virtio.ko"), load.index("9p.ko"))
        self.assertEqual(entries["dev/console"][0], stat.S_IFCHR | 0o600)

    def test_production_contents(self):
        entries = self.cpio[self.prod_a]
        self.check_common(entries, "production")
        self.assertFalse(any("dropbear" in n for n in entries), "dropbear in production")
        self.assertNotIn("setsid sh -c 'exec bash -l", entries["init"][1].decode())

    def test_development_contents(self):
        entries = self.cpio[self.dev]
        self.check_common(entries, "development")
        for b in ("/usr/sbin/dropbear", "/usr/bin/dropbearkey"):
            name = resolve(entries, b)
            self.assertIsNotNone(name, b)
            self.assertTrue(stat.S_ISREG(entries[name][0]))
            for lib in ldd(b):
                self.assertIsNotNone(resolve(entries, lib), f"{lib} for {b}")
        init = entries["init"][1].decode()
        self.assertIn("dropbear -F -E -s -p 22", init)
        self.assertIn("/run/pml/config/.dev-authorized-keys", init)
        self.assertIn("exec bash -l </dev/ttyS0", init)


if __name__ == "__main__":
    unittest.main(verbosity=2)
