#!/usr/bin/python3
"""Builds the pml guest image (DESIGN.md §6-7) from Debian packages and pml-guest-agent.

    build_image.py --variant production|development --out DIR [--agent PATH] [--kernel PATH]
                   [--version V] [--gzip-level N] [--no-strip]

DIR gets vmlinuz (the Debian kernel, copied), initramfs.cpio.gz and metadata.json in the format
services/vmm/inventory.h defines. Two builds from the same inputs are byte-identical. What the
image holds, how /init boots it and how pml-vmm uses it: deploy/image/README.md.

Debian's /usr/bin/python3, standard library only. Inputs: linux-image-amd64, busybox-static, bash,
openssl, ca-certificates, binutils (strip), dropbear-bin (development), and the repo's
pml-guest-agent (default build/services/guest-agent/pml-guest-agent).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pml_image  # noqa: E402

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_AGENT = os.path.join(REPO_ROOT, "build", "services", "guest-agent", "pml-guest-agent")
VARIANTS = ("production", "development")
CMDLINE = "console=ttyS0 panic=-1 quiet"
DEFAULT_GZIP_LEVEL = 6  # as `gzip`: -9 takes 3.5x as long for 0.5% less

# Host inputs (Debian packages).
BUSYBOX = "/bin/busybox"                    # busybox-static
BASH = "/bin/bash"                          # bash; the agent's bash runner execs /bin/bash
OPENSSL = "/usr/bin/openssl"                # openssl
OPENSSL_FILES = ("/usr/lib/ssl/openssl.cnf",  # -> /etc/ssl/openssl.cnf
                 "/usr/lib/ssl/cert.pem")     # -> /etc/ssl/certs/ca-certificates.crt
DROPBEAR = ("/usr/sbin/dropbear", "/usr/bin/dropbearkey")  # dropbear-bin (development only)
TERMINFO = ("d/dumb", "l/linux", "s/screen", "s/screen-256color", "t/tmux-256color", "v/vt100",
            "v/vt102", "v/vt220", "x/xterm", "x/xterm-256color")  # ncurses-base (development)
AGENT_PATH = "/usr/bin/pml-guest-agent"

# Kernel modules loaded at boot (dependencies such as virtio, virtio_ring, netfs and fscache are
# added from modules.dep; built-in ones are skipped). OPTIONAL_MODULES are taken when the kernel
# has them: configfs for configfs-tsm, and the TDX guest drivers of kernels that have them
# (Debian 12's 6.1 has neither tsm nor tdx-guest).
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "9pnet", "9pnet_virtio", "9p",
           "button", "evdev")
OPTIONAL_MODULES = ("configfs", "tsm", "tdx_guest")

AGENT_ARGS = ("boot --run-app --tee \"$tee\" --image-variant @VARIANT@ --state-dir /run/pml/agent "
              "--config-dir /run/pml/config --grpc-socket /var/run/pml-guest.sock "
              "--dstack-socket /var/run/dstack.sock --tappd-socket /var/run/tappd.sock "
              "@DSTACK_HTTP@--metrics-listen 0.0.0.0:9464")
DSTACK_HTTP_ARG = "--dstack-http-listen 0.0.0.0:8090 "

INIT = r"""#!/bin/sh
# /init of the pml guest image, variant @VARIANT@ (deploy/image/build_image.py; README.md there).
# busybox sh as PID 1; everything prints to /dev/console (ttyS0).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
umask 022
say() { echo "pml-image: $*"; }

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname pml-guest

while read -r m; do
  insmod "$m" || say "insmod $m failed"
done < /etc/pml/modules
if [ -d /sys/kernel/config ]; then mount -t configfs configfs /sys/kernel/config; fi

say "variant @VARIANT@ (image @VERSION@, kernel $(uname -r))"

# ACPI power button (button.ko -> /dev/input/event*) -> acpid -> /etc/acpi/power: stops the agent
# and powers off.
@ACPID@

# QEMU user networking (slirp): the host's loopback services answer at 10.0.2.2, DNS at 10.0.2.3.
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
if ip link set eth0 up; then
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  say "network eth0 10.0.2.15/24 via 10.0.2.2"
else
  say "no eth0: no network"
fi

# The VMM's app-config share (libvirt <filesystem> target dir pml-config, read-only).
mkdir -p /run/pml/config /run/pml/agent
chmod 0700 /run/pml/agent
if mount -t 9p -o trans=virtio,version=9p2000.L,ro pml-config /run/pml/config; then
  say "app config mounted at /run/pml/config"
else
  say "NO app config share (9p tag pml-config) at /run/pml/config"
fi
@DEV_SSH@
if [ -d /sys/kernel/config/tsm/report ] || [ -e /dev/tdx_guest ]; then
  tee=auto
  say "TDX guest interface found: the guest agent uses --tee auto"
else
  tee=simulated
  say "NO TDX: the guest agent uses the SIMULATED TEE (development only)"
fi

say "starting pml-guest-agent"
pml-guest-agent @AGENT_ARGS@ &
agent=$!
echo "$agent" > /run/pml/agent.pid
@DEV_SHELL@
wait "$agent"
say "guest agent exited with $?"
# Stay up so operators can read the console; the power button still powers off.
while true; do sleep 3600; done
"""

DEV_SSH = r"""
# DEVELOPMENT image: dropbear (root, public keys only) on port 22 and a root shell on ttyS0.
mkdir -p /run/dropbear /root/.ssh
chmod 0700 /root /root/.ssh
hostkey=/run/dropbear/dropbear_ed25519_host_key
dropbearkey -t ed25519 -f "$hostkey" >/dev/null 2>&1
if [ -f /run/pml/config/.dev-authorized-keys ]; then
  cp /run/pml/config/.dev-authorized-keys /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
  say "ssh: authorized keys from /run/pml/config/.dev-authorized-keys"
else
  say "ssh: no /run/pml/config/.dev-authorized-keys: nobody can log in over ssh"
fi
dropbear -F -E -s -p 22 -r "$hostkey" &
fp=$(dropbearkey -y -f "$hostkey" | grep -o 'SHA256:[^ ]*')
say "DEVELOPMENT image: dropbear on port 22 (root, keys only), host key $fp"
"""

DEV_SHELL = r"""( while true; do
    setsid sh -c 'exec bash -l </dev/ttyS0 >/dev/ttyS0 2>&1'
    sleep 1
  done ) &
say "DEVELOPMENT image: root shell on ttyS0"
"""

ACPI_POWER = r"""#!/bin/sh
echo "pml-image: power button: stopping the guest agent, powering off" > /dev/console
pids=$(pidof pml-guest-agent)
if [ -n "$pids" ]; then
  kill -TERM $pids
  i=0
  while [ $i -lt 50 ] && pidof pml-guest-agent >/dev/null; do sleep 0.1; i=$((i+1)); done
  if pidof pml-guest-agent >/dev/null; then
    echo "pml-image: the guest agent did not stop within 5 s; powering off anyway" > /dev/console
  fi
fi
sync
poweroff -f
"""

ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "etc/group": "root:x:0:\ntty:x:5:\n",
    "etc/shells": "/bin/sh\n/bin/bash\n/usr/bin/bash\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "127.0.1.1\tpml-guest\n",
    "etc/hostname": "pml-guest\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/profile": "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
                   "[ \"$(id -u)\" = 0 ] && PS1='\\h:\\w# ' || PS1='\\h:\\w$ '\n",
}


class BuildError(Exception):
    pass


def default_version():
    """The project version from the top-level CMakeLists.txt (project(pml VERSION x.y.z))."""
    try:
        with open(os.path.join(REPO_ROOT, "CMakeLists.txt")) as f:
            m = re.search(r"project\(\s*pml\s+VERSION\s+([0-9][0-9A-Za-z.+~-]*)", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    return "0.0.0"


def check_version(v):
    if not 1 <= len(v) <= 64 or not all(0x20 < ord(c) < 0x7f for c in v):
        raise BuildError(f"--version {v!r}: want 1..64 printable characters without spaces")


def agent_supports(agent, flag):
    """Whether `agent --help` lists flag (run on the build host)."""
    try:
        r = subprocess.run([agent, "--help"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"cannot run {agent} --help: {e}")
    if r.returncode != 0:
        raise BuildError(f"{agent} --help failed (rc={r.returncode}): {r.stderr.strip()[:500]}")
    return flag in r.stdout


def stripped(binary, tmpdir):
    """A copy of binary with symbols and debug info removed (binutils strip; deterministic)."""
    out = os.path.join(tmpdir, os.path.basename(binary) + ".stripped")
    r = subprocess.run(["strip", "--strip-all", "-o", out, binary], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise BuildError(f"strip {binary}: {r.stderr.strip()} (apt-get install binutils)")
    with open(out, "rb") as f:
        return f.read()


def busybox_applets(busybox):
    r = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return sorted(a for a in r.stdout.split() if a and a != "linuxrc")


def debian_packages(paths):
    """{package: version} of the Debian packages that own any of paths (dpkg-query), or {} when
    dpkg-query is missing. Paths no package owns are skipped."""
    if not shutil.which("dpkg-query"):
        return {}
    query = sorted({p for path in paths for p in (path, os.path.realpath(path))})
    r = subprocess.run(["dpkg-query", "-S", *query], capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    pkgs = set()
    for line in r.stdout.splitlines():
        if ": " not in line or line.startswith("diversion "):
            continue
        for p in line.split(": ", 1)[0].split(","):
            pkgs.add(p.strip())
    if not pkgs:
        return {}
    r = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package}\t${Version}\n",
                        *sorted(pkgs)], capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    out = {}
    for line in r.stdout.splitlines():
        if "\t" in line:
            name, version = line.split("\t", 1)
            if version:
                out[name] = version
    return dict(sorted(out.items()))


def init_script(variant, version, dstack_http):
    args = (AGENT_ARGS.replace("@DSTACK_HTTP@", DSTACK_HTTP_ARG if dstack_http else "")
            .replace("@VARIANT@", variant))
    dev = variant == "development"
    return (INIT.replace("@VARIANT@", variant)
            .replace("@VERSION@", version)
            .replace("@ACPID@", pml_image.acpid_command("/run/acpid.log"))
            .replace("@AGENT_ARGS@", args)
            .replace("@DEV_SSH@", DEV_SSH if dev else "")
            .replace("@DEV_SHELL@", DEV_SHELL if dev else ""))


def build_initramfs(variant, kver, agent, version, gzip_level=DEFAULT_GZIP_LEVEL, strip=True,
                    log=print):
    """Returns (initramfs.cpio.gz bytes, {host paths copied}, dstack_http supported)."""
    dev = variant == "development"
    c = pml_image.Cpio()
    # The usrmerge layout as on the host (bin -> usr/bin, ...), first, so everything added under
    # those names lands at its real path.
    for d in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + d):
            c.symlink(d, os.readlink("/" + d))
    for d in ("dev", "proc", "sys", "run", "mnt", "usr/local/bin", "var/log", "etc/pml"):
        c.dir(d)
    c.dir("tmp", 0o1777)
    c.dir("var/tmp", 0o1777)
    c.dir("root", 0o700)
    c.symlink("var/run", "/run")
    c.chardev("dev/console", 5, 1)  # the kernel opens it for init before devtmpfs is mounted
    c.chardev("dev/null", 1, 3, 0o666)

    host_paths = []

    def add(path, **kw):
        if not os.path.exists(path):
            raise BuildError(f"{path} is missing (see deploy/image/README.md for the packages)")
        host_paths.append(path)
        return c.add_host_path(path, **kw)

    binaries = [BUSYBOX, BASH, OPENSSL] + (list(DROPBEAR) if dev else [])
    for b in binaries:
        add(b)
    for f in OPENSSL_FILES:
        add(f)
    if dev:
        for t in TERMINFO:
            if os.path.exists("/lib/terminfo/" + t):
                add("/lib/terminfo/" + t)

    # The agent: stripped (no debug info, no build paths), at /usr/bin/pml-guest-agent.
    with tempfile.TemporaryDirectory(prefix="pml-image-") as tmp:
        if strip:
            data = stripped(agent, tmp)
        else:
            with open(agent, "rb") as f:
                data = f.read()
    c.file(AGENT_PATH, data, 0o755)
    dstack_http = agent_supports(agent, "--dstack-http-listen")
    if not dstack_http:
        log(f"WARNING: {agent} has no --dstack-http-listen: the image will serve the dstack API "
            "on its unix sockets only (rebuild the image once the agent has the flag)")

    libs = set()
    for b in [agent] + binaries:
        try:
            libs.update(pml_image.shared_libraries(b))
        except RuntimeError as e:
            raise BuildError(str(e))
    for lib in sorted(libs):
        add(lib)

    # busybox applets where no real program sits.
    bb = "/" + c.canonical(BUSYBOX.lstrip("/"))
    for a in busybox_applets(BUSYBOX):
        if not c.has(a):
            c.symlink(a, bb)

    # Kernel modules, decompressed, at their usual paths; /etc/pml/modules lists them in load
    # order and a trimmed modules.dep lets busybox modprobe find them too.
    moddir, order = pml_image.module_load_order(kver, MODULES, OPTIONAL_MODULES)
    deps = pml_image.parse_modules_dep(moddir)
    renamed = {}
    for m in order:
        data, name = pml_image.read_module(os.path.join(moddir, m))
        rel = os.path.join(os.path.dirname(m), name)
        renamed[m] = rel
        c.file(f"lib/modules/{kver}/{rel}", data)
    c.file("etc/pml/modules",
           "".join(f"/lib/modules/{kver}/{renamed[m]}\n" for m in order).encode())
    c.file(f"lib/modules/{kver}/modules.dep", "".join(
        f"{renamed[m]}: {' '.join(renamed[d] for d in deps[m])}".rstrip() + "\n"
        for m in order).encode())

    for path, text in ETC_FILES.items():
        c.file(path, text.encode())
    c.file("etc/pml/release", (f"variant={variant}\nversion={version}\nkernel={kver}\n").encode())
    pml_image.acpi_power_files(c, ACPI_POWER)
    c.file("init", init_script(variant, version, dstack_http).encode(), 0o755)
    return pml_image.gzip_reproducible(c.bytes(), gzip_level), host_paths, dstack_http


def build(variant, out_dir, agent=DEFAULT_AGENT, kernel=None, version=None,
          gzip_level=DEFAULT_GZIP_LEVEL, strip=True, log=print):
    """Builds the image into out_dir; returns the metadata written."""
    if variant not in VARIANTS:
        raise BuildError(f"--variant {variant!r}: want one of {', '.join(VARIANTS)}")
    version = default_version() if version is None else version
    check_version(version)
    if not os.path.isfile(agent) or not os.access(agent, os.X_OK):
        raise BuildError(f"no pml-guest-agent at {agent} (build it: cmake --build build "
                         "--target pml-guest-agent, or pass --agent)")
    if kernel is None:
        kernel, kver = pml_image.newest_kernel()
    else:
        if not os.path.isfile(kernel):
            raise BuildError(f"--kernel {kernel}: no such file")
        try:
            kver = pml_image.kernel_version_of(kernel)
        except ValueError as e:
            raise BuildError(str(e))
    if not os.path.isfile(f"/lib/modules/{kver}/modules.dep"):
        raise BuildError(f"no /lib/modules/{kver}/modules.dep for {kernel}")

    try:
        initrd, host_paths, dstack_http = build_initramfs(variant, kver, agent, version,
                                                          gzip_level, strip, log)
    except RuntimeError as e:
        raise BuildError(str(e))

    os.makedirs(out_dir, exist_ok=True)
    kernel_out = os.path.join(out_dir, pml_image.KERNEL_NAME)
    shutil.copyfile(kernel, kernel_out + ".tmp")
    os.chmod(kernel_out + ".tmp", 0o644)
    os.replace(kernel_out + ".tmp", kernel_out)
    initrd_out = os.path.join(out_dir, pml_image.INITRD_NAME)
    with open(initrd_out + ".tmp", "wb") as f:
        f.write(initrd)
    os.chmod(initrd_out + ".tmp", 0o644)
    os.replace(initrd_out + ".tmp", initrd_out)

    files = {n: pml_image.file_entry(os.path.join(out_dir, n))
             for n in sorted((pml_image.KERNEL_NAME, pml_image.INITRD_NAME))}
    meta = {
        "version": version,
        "variant": variant,
        "kernel": pml_image.KERNEL_NAME,
        "initrd": pml_image.INITRD_NAME,
        "cmdline": CMDLINE,
        "files": files,
        "os_image_hash": pml_image.compute_os_image_hash(
            {n: v["sha256"] for n, v in files.items()}),
        # Extra keys (the VMM ignores them): what went in, for audits and rebuilds.
        "kernel_version": kver,
        "agent_sha256": pml_image.sha256_file(agent),
        "agent_stripped": strip,
        "dstack_http_listen": "0.0.0.0:8090" if dstack_http else None,
        "debian_packages": debian_packages(host_paths + [os.path.realpath(kernel)]),
    }
    pml_image.write_metadata(out_dir, meta)
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Build the pml guest image (vmlinuz, initramfs.cpio.gz, metadata.json) "
                    "from Debian packages and pml-guest-agent. See deploy/image/README.md.")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--agent", default=DEFAULT_AGENT,
                   help="pml-guest-agent binary (default: build/services/guest-agent/"
                        "pml-guest-agent in the repo)")
    p.add_argument("--kernel", help="Debian kernel /boot/vmlinuz-<version> (default: the newest "
                                    "in /boot); its modules come from /lib/modules/<version>")
    p.add_argument("--version", help="image version for metadata.json (default: the project "
                                     "version in CMakeLists.txt)")
    p.add_argument("--gzip-level", type=int, default=DEFAULT_GZIP_LEVEL, choices=range(1, 10),
                   metavar="1-9", help=f"initramfs gzip level (default {DEFAULT_GZIP_LEVEL})")
    p.add_argument("--no-strip", dest="strip", action="store_false",
                   help="copy the agent as is (default: strip symbols and debug info)")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        meta = build(a.variant, a.out, a.agent, a.kernel, a.version, a.gzip_level, a.strip,
                     log=lambda m: print(f"build_image: {m}", file=sys.stderr))
    except (BuildError, OSError, subprocess.CalledProcessError) as e:
        print(f"build_image: error: {e}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{n} {v['size']} bytes" for n, v in meta["files"].items())
    print(f"build_image: {a.variant} image {meta['version']} (kernel {meta['kernel_version']}) "
          f"in {a.out}: {sizes}; os_image_hash {meta['os_image_hash']}; "
          f"{time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
