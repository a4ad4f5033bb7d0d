"""A usable system libvirtd (qemu:///system) for tests that boot real guests.

Run as root with Debian's /usr/bin/python3 after installing libvirt-daemon,
libvirt-daemon-driver-qemu, libvirt-clients and qemu-system-x86 (no libvirt-daemon-system, no
systemd needed).

    with Libvirtd() as lv:          # lv.uri == "qemu:///system"
        lv.virsh("define", xml_path)
        ...
        cleanup_domains("pml-t1234-")

Policy: if `virsh -c qemu:///system version` already answers, that libvirtd is used as it is
(its configuration is not touched) and left running. Otherwise the host is set up idempotently:
the `kvm` and `libvirt-qemu` groups and the `libvirt-qemu` user (--system); /var/log/libvirt,
/var/run/libvirt, /var/lib/libvirt/qemu; exactly three settings in /etc/libvirt/qemu.conf
(user = "root", group = "root", security_driver = "none"; the original file, if any, is kept once
as qemu.conf.pml-orig). Then virtlogd (unless one is already running) and libvirtd are started
detached (own session, stdin /dev/null, output appended to /var/log/libvirt/pml-tests/*.log) and
waited for with a deadline. On exit only the daemons started here are stopped (SIGTERM, then
SIGKILL after a deadline), libvirtd before virtlogd; running domains are reported, not destroyed.

Every wait is a condition polled with a deadline; nothing sleeps blindly.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

URI = "qemu:///system"
QEMU_CONF = "/etc/libvirt/qemu.conf"
QEMU_CONF_BACKUP = QEMU_CONF + ".pml-orig"
QEMU_CONF_SETTINGS = (("user", '"root"'), ("group", '"root"'), ("security_driver", '"none"'))
DIRS = ("/var/log/libvirt", "/var/log/libvirt/qemu", "/var/run/libvirt", "/var/lib/libvirt/qemu",
        "/var/cache/libvirt/qemu")
LOG_DIR = "/var/log/libvirt/pml-tests"
VIRTLOGD_SOCK = "/var/run/libvirt/virtlogd-sock"


def _poll(cond, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def virsh(*args, uri=URI, check=True, timeout=60):
    """Runs `virsh -c URI ARGS...`; returns the CompletedProcess (text, captured)."""
    r = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)} failed (rc={r.returncode}): "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return r


def libvirtd_answers(uri=URI, timeout=10):
    try:
        return virsh("version", uri=uri, check=False, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def kvm_usable():
    """Whether tests should ask for domain type 'kvm'. /dev/kvm exists on the CI machines but QEMU
    cannot use it there (it aborts or hangs), so KVM counts as usable only when PML_USE_KVM=1 is
    set and /dev/kvm is read/writable."""
    return os.environ.get("PML_USE_KVM") == "1" and os.access("/dev/kvm", os.R_OK | os.W_OK)


def domain_type():
    """'kvm' or 'qemu' (TCG), for <domain type='...'>."""
    return "kvm" if kvm_usable() else "qemu"


def list_domains(uri=URI):
    """Names of all domains (running or not)."""
    out = virsh("list", "--all", "--name", uri=uri).stdout
    return [n.strip() for n in out.splitlines() if n.strip()]


def domain_state(name, uri=URI):
    """`virsh domstate` text ('running', 'shut off', ...) or None if there is no such domain."""
    r = virsh("domstate", name, uri=uri, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def cleanup_domains(prefix, uri=URI):
    """Destroys and undefines every domain whose name starts with prefix (prefix must be
    non-empty). Returns the names removed. Raises if any is still there afterwards."""
    if not prefix:
        raise ValueError("cleanup_domains needs a non-empty prefix")
    names = [n for n in list_domains(uri) if n.startswith(prefix)]
    for n in names:
        if domain_state(n, uri) not in (None, "shut off"):
            virsh("destroy", n, uri=uri, check=False)
        if virsh("undefine", n, "--nvram", "--managed-save", "--snapshots-metadata", uri=uri,
                 check=False).returncode != 0:
            virsh("undefine", n, uri=uri, check=False)
    left = [n for n in list_domains(uri) if n.startswith(prefix)]
    if left:
        raise RuntimeError(f"domains still present after cleanup: {left}")
    return names


def _ensure_group(name):
    if subprocess.run(["getent", "group", name], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)


def _ensure_user(name, group, groups=()):
    if subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0:
        extra = ["--groups", ",".join(groups)] if groups else []
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                        "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "--gid", group, *extra,
                        name], check=True, capture_output=True)


def configure_qemu_conf(path=QEMU_CONF, settings=QEMU_CONF_SETTINGS):
    """Sets exactly `settings` in qemu.conf (replacing an active line for the key, else
    appending), keeping every other line. Idempotent; the first original is saved as
    <path>.pml-orig. Returns True if the file changed."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    lines = old.splitlines()
    for key, value in settings:
        want = f"{key} = {value}"
        found = False
        for i, line in enumerate(lines):
            s = line.strip()
            if s.startswith("#") or "=" not in s:
                continue
            if s.split("=", 1)[0].strip() == key:
                if not found:
                    lines[i] = want
                    found = True
                else:
                    lines[i] = "# " + line + "  # pml-tests: duplicate disabled"
        if not found:
            lines.append(want)
    new = "\n".join(lines) + "\n"
    if new == old:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    backup = path + ".pml-orig"
    if os.path.exists(path) and not os.path.exists(backup):
        shutil.copy2(path, backup)
    tmp = path + ".pml-tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)
    return True


class Libvirtd:
    """Context manager: a libvirtd answering at qemu:///system. See the module docstring."""

    def __init__(self, start_timeout=60):
        self.uri = URI
        self.start_timeout = start_timeout
        self.started = []  # (name, Popen) of the daemons started here, in start order
        self.reused = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def virsh(self, *args, **kw):
        return virsh(*args, uri=self.uri, **kw)

    def start(self):
        if libvirtd_answers(self.uri):
            self.reused = True
            return self
        if os.geteuid() != 0:
            raise RuntimeError("no libvirtd answers at qemu:///system and setting one up "
                               "needs root")
        for tool in ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"):
            if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
                raise RuntimeError(f"{tool} not installed (apt-get install libvirt-daemon "
                                   "libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86)")
        # Debian builds the QEMU driver with user and group "libvirt-qemu" as compiled-in
        # defaults and resolves both before reading qemu.conf: a missing one makes the driver's
        # initialisation fail (and libvirtd exit with status 0). /dev/kvm belongs to "kvm".
        _ensure_group("kvm")
        _ensure_group("libvirt-qemu")
        _ensure_user("libvirt-qemu", "libvirt-qemu", groups=("kvm",))
        for d in DIRS + (LOG_DIR,):
            os.makedirs(d, exist_ok=True)
        configure_qemu_conf()
        try:
            if not self._virtlogd_alive():
                self._spawn("virtlogd")
                _poll(lambda: self._check_alive() and os.path.exists(VIRTLOGD_SOCK),
                      self.start_timeout, "virtlogd's socket " + VIRTLOGD_SOCK)
            self._spawn("libvirtd")
            _poll(lambda: self._check_alive() and libvirtd_answers(self.uri, timeout=5),
                  self.start_timeout, "libvirtd to answer at " + self.uri, interval=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def _virtlogd_alive(self):
        # A virtlogd left running (by a package, a user or an earlier crashed run) owns the socket
        # and its pid file; starting a second one would fail on the pid-file lock.
        try:
            with open("/var/run/virtlogd.pid") as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return os.path.exists(VIRTLOGD_SOCK)

    def _spawn(self, name):
        exe = shutil.which(name, path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
        log = open(os.path.join(LOG_DIR, f"{name}.log"), "ab")
        try:
            # Foreground mode in its own session: detached from the test's terminal and process
            # group, but its pid is known exactly, so only this process is stopped later.
            p = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True)
        finally:
            log.close()
        self.started.append((name, p))

    def _check_alive(self):
        for name, p in self.started:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}; see "
                                   f"{os.path.join(LOG_DIR, name + '.log')}")
        return True

    def log(self, name="libvirtd"):
        try:
            with open(os.path.join(LOG_DIR, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=30):
        if any(n == "libvirtd" and p.poll() is None for n, p in self.started):
            # QEMU processes outlive libvirtd; say so rather than orphan them silently.
            try:
                running = virsh("list", "--name", uri=self.uri, check=False,
                                timeout=10).stdout.split()
            except subprocess.TimeoutExpired:
                running = []
            if running:
                print(f"libvirtd.py: stopping libvirtd with domains still running: {running}",
                      file=sys.stderr)
        while self.started:
            name, p = self.started.pop()  # libvirtd first, then virtlogd
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout)


if __name__ == "__main__":
    with Libvirtd() as lv:
        print("reused" if lv.reused else "started", lv.virsh("version").stdout.strip())
        if len(sys.argv) > 1 and sys.argv[1] == "--keep":
            lv.started.clear()
