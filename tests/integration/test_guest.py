"""A tiny, reproducible test guest in pml-vmm's image-directory format.

    img = build_test_image(out_dir)                 # builds into out_dir, returns out_dir
    img = build_test_image(None, "development")     # cached under $TMPDIR/pml-test-guest/

The directory holds
  vmlinuz            the newest /boot/vmlinuz-* (version order), copied
  initramfs.cpio.gz  busybox (busybox-static) + a few kernel modules of that kernel + /init,
                     written by deploy/image/pml_image.py's newc writer: entries sorted,
                     mtime 0, uid/gid 0, gzip without name or timestamp -> byte-identical on
                     every build
  metadata.json      {"version", "variant", "kernel", "initrd", "cmdline", "files", "os_image_hash"}

The guest's /init (busybox sh, PID 1):
  - mounts proc, sysfs, devtmpfs; loads button + evdev (ACPI power button as an input device) and
    virtio_pci + virtio_net;
  - starts busybox acpid: a power-button press (`virsh shutdown`, QEMU system_powerdown) runs
    `poweroff -f`;
  - if eth0 exists: 10.0.2.15/24 via 10.0.2.2 (QEMU user networking's defaults) and a TCP server on
    port 22 that answers every connection with one line, BANNER, and closes;
  - prints BOOTED_MARKER (only once the above is up, so a shutdown request after the marker is
    honoured), then "pml-test-guest: variant <variant>", "pml-test-guest: cmdline <cmdline>",
    then HEARTBEAT_PREFIX + N once a second (N = 1, 2, ...).
All output goes to /dev/console, i.e. ttyS0 with the cmdline's console=ttyS0.

The reproducible parts (cpio writer, gzip -n, module dependencies, metadata.json, the ACPI
power-button set-up) live in deploy/image/pml_image.py, shared with the real guest image's builder
(deploy/image/build_image.py); they are re-exported here under their old names.

Run with Debian's /usr/bin/python3 (stdlib only). Needs linux-image-amd64 (a kernel in /boot and
its modules in /lib/modules) and busybox-static.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

_IMAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "image")
sys.path.insert(0, os.path.normpath(_IMAGE_DIR))
import pml_image  # noqa: E402
from pml_image import (Cpio, compute_os_image_hash, gzip_reproducible,  # noqa: E402,F401
                       image_intact, read_metadata)

_sha256_file = pml_image.sha256_file

__test__ = False  # a helper module despite its name: keep pytest from collecting it

BOOTED_MARKER = "pml-test-guest: booted"
HEARTBEAT_PREFIX = "pml-test-guest: alive "
CMDLINE_PREFIX = "pml-test-guest: cmdline "
BANNER = "pml-test-guest: hello"
GUEST_PORT = 22
DEFAULT_CMDLINE = "console=ttyS0 panic=-1 quiet"
VARIANTS = ("production", "development")
IMAGE_VERSION = "test-1"
KERNEL_NAME = pml_image.KERNEL_NAME
INITRD_NAME = pml_image.INITRD_NAME
BUSYBOX = "/bin/busybox"
BUILDER_VERSION = "1"  # bump when the image layout changes without INIT changing

# Loaded in this order (dependencies are added first automatically from modules.dep).
MODULES = ("drivers/acpi/button.ko", "drivers/input/evdev.ko",
           "drivers/virtio/virtio_pci.ko", "drivers/net/virtio_net.ko")

APPLETS = ("acpid", "cat", "echo", "insmod", "ip", "mkdir", "mount", "nc", "poweroff", "sh",
           "sleep")

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /var/run /var/log /tmp
for m in $(cat /etc/pml-modules); do insmod "/lib/modules/$m"; done
# ACPI power button (button.ko -> /dev/input/event*) -> acpid -> /etc/acpi/power -> poweroff -f.
acpid -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log
if ip link set eth0 up 2>/dev/null; then
  ip link set lo up
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  nc -ll -p 22 -e /bin/pml-banner &
fi
echo "pml-test-guest: booted"
echo "pml-test-guest: variant $(cat /etc/pml-variant)"
echo "pml-test-guest: cmdline $(cat /proc/cmdline)"
i=0
while true; do
  i=$((i+1))
  echo "pml-test-guest: alive $i"
  sleep 1
done
"""

ACPI_POWER = ("#!/bin/sh\necho 'pml-test-guest: power button, powering off' > /dev/console\n"
              "poweroff -f\n")
BANNER_SCRIPT = "#!/bin/sh\necho '%s'\n" % BANNER


def _version_key(s):
    return pml_image.version_key(s)


def newest_kernel():
    """(path, version) of the newest /boot/vmlinuz-* by version order."""
    return pml_image.newest_kernel()


def _module_order(kver):
    """Module paths (modules.dep keys, kernel/...) in load order, dependencies first. Raises if
    the kernel's modules are missing."""
    return pml_image.module_load_order(kver, MODULES)


def build_initramfs(variant, kver, busybox=BUSYBOX):
    moddir, order = _module_order(kver)
    c = Cpio()
    for d in ("dev", "proc", "sys", "tmp", "var/run", "var/log", "etc/acpi", "lib/modules"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)  # the kernel opens it for init before devtmpfs is mounted
    c.chardev("dev/null", 1, 3, 0o666)
    with open(busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    for a in APPLETS:
        c.symlink(f"bin/{a}", "busybox")
    c.file("init", INIT.encode(), 0o755)
    c.file("bin/pml-banner", BANNER_SCRIPT.encode(), 0o755)
    pml_image.acpi_power_files(c, ACPI_POWER)
    c.file("etc/pml-variant", (variant + "\n").encode())
    names = []
    for m in order:
        name = os.path.basename(m)
        with open(os.path.join(moddir, m), "rb") as f:
            c.file(f"lib/modules/{name}", f.read())
        names.append(name)
    c.file("etc/pml-modules", ("\n".join(names) + "\n").encode())
    return gzip_reproducible(c.bytes())


def _write_image(out_dir, variant, kernel, kver, busybox, cmdline):
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(kernel, os.path.join(out_dir, KERNEL_NAME))
    os.chmod(os.path.join(out_dir, KERNEL_NAME), 0o644)
    with open(os.path.join(out_dir, INITRD_NAME), "wb") as f:
        f.write(build_initramfs(variant, kver, busybox))
    files = {n: pml_image.file_entry(os.path.join(out_dir, n)) for n in (KERNEL_NAME, INITRD_NAME)}
    meta = {
        "version": IMAGE_VERSION,
        "variant": variant,
        "kernel": KERNEL_NAME,
        "initrd": INITRD_NAME,
        "cmdline": cmdline,
        "files": files,
        "os_image_hash": compute_os_image_hash({n: v["sha256"] for n, v in files.items()}),
    }
    pml_image.write_metadata(out_dir, meta)
    return out_dir


def _builder_source():
    """pml_image.py's source: part of the cache key, so a change to the shared writer rebuilds."""
    with open(pml_image.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def default_cache_dir():
    return os.path.join(tempfile.gettempdir(), "pml-test-guest")


def cache_key(variant, kernel=None, busybox=BUSYBOX, cmdline=DEFAULT_CMDLINE):
    if kernel is None:
        kernel, _ = newest_kernel()
    h = hashlib.sha256()
    for part in (BUILDER_VERSION, variant, cmdline, os.path.realpath(kernel),
                 str(os.stat(kernel).st_mtime_ns), _sha256_file(busybox), INIT, ACPI_POWER,
                 BANNER_SCRIPT, " ".join(MODULES), " ".join(APPLETS), _builder_source()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:24]


def build_test_image(out_dir=None, variant="production", cache_dir=None, kernel=None,
                     busybox=BUSYBOX, cmdline=DEFAULT_CMDLINE):
    """Builds the test guest image and returns its directory.

    out_dir given: always builds fresh into out_dir (created if missing; existing vmlinuz,
    initramfs.cpio.gz and metadata.json are overwritten) and returns out_dir.
    out_dir None: returns <cache_dir>/<variant>-<key>, cache_dir defaulting to
    $TMPDIR/pml-test-guest; key = builder + kernel path/mtime + busybox sha256 + variant +
    cmdline. An existing intact entry is returned as is; a broken one is rebuilt. Entries are
    published by an atomic rename, so concurrent callers are safe. Treat a cached directory as
    read-only: copy it (shutil.copytree) before altering files.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if kernel is None:
        kernel, kver = newest_kernel()
    else:
        kver = os.path.basename(kernel)[len("vmlinuz-"):]
    if out_dir is not None:
        return _write_image(out_dir, variant, kernel, kver, busybox, cmdline)

    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, f"{variant}-{cache_key(variant, kernel, busybox, cmdline)}")
    if os.path.isdir(final):
        if image_intact(final):
            return final
        shutil.rmtree(final, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
    try:
        _write_image(tmp, variant, kernel, kver, busybox, cmdline)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not image_intact(final):  # lost a race to a broken entry: should not happen
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def cached_test_image(variant="production", cache_dir=None):
    """The cached image for variant (see build_test_image)."""
    return build_test_image(None, variant, cache_dir=cache_dir)


def wait_for_console(path, text, timeout, start=0, proc_alive=None):
    """Polls the console log file at path until text appears after byte offset start; returns
    the seconds waited. proc_alive (optional callable) is checked each poll and must stay true.
    Raises TimeoutError with the log's tail."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    needle = text.encode()
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                if needle in f.read():
                    return time.monotonic() - t0
        except FileNotFoundError:
            pass
        if proc_alive is not None and not proc_alive():
            raise RuntimeError(f"guest stopped before {text!r} appeared in {path}:\n"
                               + _tail(path))
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {text!r} in {path}:\n"
                               + _tail(path))
        time.sleep(0.1)


def _tail(path, n=3000):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return "(no console file)"


if __name__ == "__main__":
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else None
    variant = sys.argv[2] if len(sys.argv) > 2 else "production"
    d = build_test_image(out, variant)
    print(d)
    print(json.dumps(read_metadata(d), indent=2))
