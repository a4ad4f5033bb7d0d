"""Building blocks for reproducible guest images in pml-vmm's image-directory format.

Used by deploy/image/build_image.py (the real guest image) and tests/integration/test_guest.py (the
tiny boot-test guest). Debian's /usr/bin/python3, standard library only.

  Cpio                 a cpio "newc" writer (what the kernel's initramfs unpacker reads), entries
                       sorted, mtime 0, uid/gid 0, inode numbers by position: byte-identical output
                       for identical input. Knows its own symlinks, so a file added under "bin/"
                       after "bin -> usr/bin" lands in usr/bin (the usrmerge layout).
  read_cpio            reads such an archive back (tests, `pml_image.py list`).
  gzip_reproducible    gzip without file name or timestamp (`gzip -n`).
  newest_kernel, module_load_order, read_module
                       a Debian kernel from /boot and its modules with dependencies resolved from
                       modules.dep (dependencies first).
  shared_libraries, Cpio.add_host_path
                       a binary's shared libraries as `ldd` names them (plus the dynamic loader),
                       copied at their real paths with every symlink on the way.
  sha256sum_text, compute_os_image_hash, file_entry, write_metadata, read_metadata, image_intact
                       metadata.json as services/vmm/inventory.h defines it.
  acpi_power_files     busybox acpid's configuration for the ACPI power button.

`python3 pml_image.py list FILE.cpio.gz` prints an initramfs's entries.
"""
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import shutil
import stat
import subprocess

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initramfs.cpio.gz"
METADATA_NAME = "metadata.json"


# ---------------------------------------------------------------------------------------------
# cpio "newc", reproducible by construction.

class Cpio:
    """An in-memory initramfs. Paths are relative to the archive root ("bin/sh"; a leading "/"
    is dropped). Parent directories are created as needed (0755). Every entry is owned by 0:0
    and has mtime 0; entries are written sorted by path, so the output depends only on what was
    added, never on the order."""

    MAX_SYMLINK_DEPTH = 40

    def __init__(self):
        self.entries = {}  # path (no leading /) -> (mode, data, (rdev major, rdev minor))

    def canonical(self, path, _depth=0):
        """path with every symlink among its parent directories (entries of this archive)
        resolved; the last component is kept as is."""
        if _depth > self.MAX_SYMLINK_DEPTH:
            raise ValueError(f"too many levels of symlinks in the archive at {path!r}")
        parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        out = []
        for i, p in enumerate(parts[:-1]):
            if p == "..":
                if out:
                    out.pop()
                continue
            cur = "/".join(out + [p])
            e = self.entries.get(cur)
            if e is not None and stat.S_ISLNK(e[0]):
                target = e[1].decode()
                base = "/" if target.startswith("/") else "/" + "/".join(out)
                resolved = posixpath.normpath(posixpath.join(base, target)).strip("/")
                rest = "/".join(parts[i + 1:])
                return self.canonical(f"{resolved}/{rest}" if resolved else rest, _depth + 1)
            out.append(p)
        return "/".join(out + parts[-1:])

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            self.entries.setdefault(d, (stat.S_IFDIR | 0o755, b"", (0, 0)))

    def _put(self, path, mode, data, rdev=(0, 0)):
        path = self.canonical(path)
        if not path:
            raise ValueError("empty archive path")
        self._parents(path)
        self.entries[path] = (mode, data, rdev)
        return path

    def dir(self, path, perm=0o755):
        return self._put(path, stat.S_IFDIR | perm, b"")

    def file(self, path, data, perm=0o644):
        return self._put(path, stat.S_IFREG | perm, bytes(data))

    def symlink(self, path, target):
        return self._put(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path, major, minor, perm=0o600):
        return self._put(path, stat.S_IFCHR | perm, b"", (major, minor))

    def has(self, path):
        return self.canonical(path) in self.entries

    def add_host_path(self, path, perm=None, data=None, _depth=0):
        """Copies the host file `path` (absolute) into the archive at the same path, recreating
        every symlink met on the way (in parent directories and the file itself) so the file is
        reachable by the same name and also sits at its real path, as on the host:
        /lib64/ld-linux-x86-64.so.2 gives lib64 -> usr/lib64, usr/lib64/ld-linux-x86-64.so.2 ->
        ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 and the file. perm defaults to the host
        file's permission bits; data (bytes) replaces the host file's contents. Returns the
        archive path of the regular file."""
        if _depth > self.MAX_SYMLINK_DEPTH:
            raise ValueError(f"too many levels of symlinks at {path}")
        if not path.startswith("/"):
            raise ValueError(f"add_host_path needs an absolute path, not {path!r}")
        parts = [p for p in posixpath.normpath(path).split("/") if p]
        for i, comp in enumerate(parts):
            cur = "/" + "/".join(parts[:i + 1])
            st = os.lstat(cur)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(cur)
                self.symlink(cur, target)
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(cur), target))
                rest = parts[i + 1:]
                return self.add_host_path(posixpath.join(resolved, *rest) if rest else resolved,
                                          perm, data, _depth + 1)
            if i < len(parts) - 1:
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(cur)
                if cur.strip("/") not in self.entries:
                    self.dir(cur)
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise ValueError(f"{cur} is not a regular file")
                if data is None:
                    with open(cur, "rb") as f:
                        contents = f.read()
                else:
                    contents = data
                return self.file(cur, contents, (st.st_mode & 0o777) if perm is None else perm)
        raise ValueError(f"nothing to add at {path!r}")

    def bytes(self):
        out = io.BytesIO()

        def entry(ino, name, mode, data, rdev, nlink):
            nb = name.encode() + b"\0"
            hdr = "070701" + "".join("%08X" % v for v in (
                ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0))
            out.write(hdr.encode() + nb)
            out.write(b"\0" * (-(110 + len(nb)) % 4))
            out.write(data)
            out.write(b"\0" * (-len(data) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[name]
            entry(ino, name, mode, data, rdev, 2 if stat.S_ISDIR(mode) else 1)
        entry(0, "TRAILER!!!", 0, b"", (0, 0), 1)
        return out.getvalue()


def read_cpio(data):
    """Parses a "newc" archive (gzip-compressed or not). Returns {path: (mode, data, (rdevmajor,
    rdevminor), (uid, gid, mtime))} in archive order; data is a symlink's target for links.
    Raises ValueError on a malformed archive."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    entries = {}
    off = 0
    while True:
        hdr = data[off:off + 110]
        if len(hdr) < 110 or hdr[:6] not in (b"070701", b"070702"):
            raise ValueError(f"bad cpio header at offset {off}")
        f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, mtime, size, rmaj, rmin, namesize = (f[1], f[2], f[3], f[5], f[6], f[9],
                                                             f[10], f[11])
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off:off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body, (rmaj, rmin), (uid, gid, mtime))


def gzip_reproducible(data, level=9):
    """`gzip -n -<level>` equivalent: no file name, mtime 0 (Python's zlib, so stable for a
    given zlib)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Kernel and modules.

def version_key(s):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s)]


def newest_kernel(boot_dir="/boot"):
    """(path, version) of the newest <boot_dir>/vmlinuz-* by version order."""
    kernels = [k for k in glob.glob(os.path.join(boot_dir, "vmlinuz-*")) if os.path.isfile(k)]
    if not kernels:
        raise RuntimeError(f"no {boot_dir}/vmlinuz-* (apt-get install linux-image-amd64)")
    k = max(kernels, key=lambda p: version_key(os.path.basename(p)))
    return k, os.path.basename(k)[len("vmlinuz-"):]


def kernel_version_of(kernel_path):
    """The version in a Debian kernel's file name (/boot/vmlinuz-<version>)."""
    base = os.path.basename(os.path.realpath(kernel_path))
    if not base.startswith("vmlinuz-") or len(base) == len("vmlinuz-"):
        raise ValueError(f"{kernel_path}: want a /boot/vmlinuz-<version> file")
    return base[len("vmlinuz-"):]


_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


def _module_name(rel):
    base = os.path.basename(rel)
    for s in _MODULE_SUFFIXES:
        if base.endswith(s):
            base = base[:-len(s)]
            break
    return base.replace("-", "_")


def parse_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" in line:
                m, rest = line.split(":", 1)
                deps[m.strip()] = rest.split()
    return deps


def builtin_modules(moddir):
    """Names (dashes as underscores) of the modules built into the kernel (=y)."""
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            return {_module_name(line.strip()) for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def module_load_order(kver, wanted, optional=(), modules_root="/lib/modules"):
    """(moddir, [modules.dep keys in load order, dependencies first]).

    wanted / optional: modules.dep keys ("kernel/drivers/acpi/button.ko"), paths below kernel/
    ("drivers/acpi/button.ko") or module names ("virtio_rng", "9pnet-virtio"). A wanted module
    that is neither a loadable module nor built in (modules.builtin) is an error; an optional
    one is skipped then. Built-in modules need nothing and are skipped."""
    moddir = os.path.join(modules_root, kver)
    deps = parse_modules_dep(moddir)
    by_name = {_module_name(k): k for k in deps}
    builtin = None
    order = []

    def visit(m, seen=()):
        if m in order:
            return
        for d in deps[m]:
            if d not in seen:
                visit(d, seen + (m,))
        order.append(m)

    for w, required in [(w, True) for w in wanted] + [(w, False) for w in optional]:
        key = w if w in deps else ("kernel/" + w if "kernel/" + w in deps else
                                   by_name.get(_module_name(w)))
        if key is None:
            if builtin is None:
                builtin = builtin_modules(moddir)
            if _module_name(w) in builtin or not required:
                continue
            raise RuntimeError(f"module {w} not in {moddir}/modules.dep nor built in")
        visit(key)
    return moddir, order


def read_module(path):
    """A module file's contents, decompressed (.ko.xz, .ko.gz; .ko.zst through `zstd -dc`), so
    any insmod loads it. Returns (bytes, file name ending in .ko)."""
    base = os.path.basename(path)
    with open(path, "rb") as f:
        data = f.read()
    if base.endswith(".ko.xz"):
        return lzma.decompress(data), base[:-3]
    if base.endswith(".ko.gz"):
        return gzip.decompress(data), base[:-3]
    if base.endswith(".ko.zst"):
        if not shutil.which("zstd"):
            raise RuntimeError(f"{path}: zstd-compressed module and no `zstd` "
                               "(apt-get install zstd)")
        out = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        return out, base[:-4]
    return data, base


# ---------------------------------------------------------------------------------------------
# Shared libraries.

_LDD_ARROW = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")
_LDD_PLAIN = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")


def shared_libraries(binary):
    """Sorted absolute paths of every shared library `ldd binary` names, the dynamic loader
    included (as ldd prints them, e.g. /lib/x86_64-linux-gnu/libc.so.6). Empty for a static
    binary. Raises RuntimeError when a library is not found."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    text = r.stdout + r.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if r.returncode != 0:
        raise RuntimeError(f"ldd {binary} failed: {text.strip()}")
    libs = set()
    for line in r.stdout.splitlines():
        if "linux-vdso" in line or "linux-gate" in line:
            continue
        if "=> not found" in line:
            raise RuntimeError(f"ldd {binary}: {line.strip()}")
        m = _LDD_ARROW.match(line)
        if m:
            libs.add(m.group(2))
            continue
        m = _LDD_PLAIN.match(line)
        if m:
            libs.add(m.group(1))
    return sorted(libs)


# ---------------------------------------------------------------------------------------------
# metadata.json (services/vmm/inventory.h).

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256sum_text(files):
    """files: {name: sha256 hex}. What `sha256sum` prints for them sorted by name (bytewise):
    "<hex>  <name>\\n" each."""
    names = sorted(files, key=lambda n: n.encode())
    return "".join(f"{files[n]}  {n}\n" for n in names)


def compute_os_image_hash(files):
    """files: {name: sha256 hex}. SHA-256 of sha256sum_text(files) (inventory.h OsImageHash)."""
    return hashlib.sha256(sha256sum_text(files).encode()).hexdigest()


def file_entry(path):
    return {"sha256": sha256_file(path), "size": os.path.getsize(path)}


def write_metadata(out_dir, meta):
    """Writes metadata.json (2-space indent, keys in the given order, trailing newline)."""
    path = os.path.join(out_dir, METADATA_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def read_metadata(image_dir):
    with open(os.path.join(image_dir, METADATA_NAME)) as f:
        return json.load(f)


def image_intact(image_dir):
    """metadata.json parses, every listed file exists with the listed size and sha256, and
    os_image_hash matches."""
    try:
        meta = read_metadata(image_dir)
        for n, v in meta["files"].items():
            p = os.path.join(image_dir, n)
            if os.path.getsize(p) != v["size"] or sha256_file(p) != v["sha256"]:
                return False
        return meta["os_image_hash"] == compute_os_image_hash(
            {n: v["sha256"] for n, v in meta["files"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------
# ACPI power button.
#
# button.ko turns the ACPI power button (libvirt `virsh shutdown --mode acpi`, QEMU
# system_powerdown) into an input device (/dev/input/event*, through evdev.ko); busybox acpid's
# built-in map turns KEY_POWER into the event "PWRF 00000080", and its action file (-a) maps the
# event name to a handler path relative to its -c directory. Start it as ACPID_COMMAND.

ACPID_CONF = b"PWRF power\n"
ACPI_DIR = "etc/acpi"


def acpid_command(log_path):
    return f"acpid -c /etc/acpi -a /etc/acpid.conf -l {log_path}"


def acpi_power_files(cpio, handler_script):
    """Adds /etc/acpid.conf and the power-button handler /etc/acpi/power (handler_script, text)."""
    cpio.file(f"{ACPI_DIR}/power", handler_script.encode(), 0o755)
    cpio.file("etc/acpid.conf", ACPID_CONF)


def _list_main(argv):
    with open(argv[0], "rb") as f:
        entries = read_cpio(f.read())
    for name, (mode, data, rdev, _) in entries.items():
        kind = stat.filemode(mode)
        extra = f" -> {data.decode()}" if stat.S_ISLNK(mode) else (
            f" {rdev[0]},{rdev[1]}" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            f" {len(data)}")
        print(f"{kind} /{name}{extra}")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "list":
        _list_main(sys.argv[2:])
    else:
        print("usage: pml_image.py list FILE.cpio[.gz]", file=sys.stderr)
        sys.exit(2)
