"""A throwaway PostgreSQL server for integration tests (the Python twin of
lib/store/testing/local_postgres.h).

    from pg import LocalPostgres, PostgresUnavailable
    with LocalPostgres() as pg:
        stack.start("kms", ["--db", pg.url])

A fresh cluster (initdb) in a temp dir (/dev/shm when it has room), listening only on a unix
socket in that dir (listen_addresses=''), fsync off; leaving the `with` block stops it (pg_ctl
stop -m immediate) and removes the dir. Uses Debian's `postgresql` package binaries
(/usr/lib/postgresql/15/bin, else the newest /usr/lib/postgresql/<n>/bin, or
$PML_POSTGRES_BINDIR). PostgreSQL refuses to run as root, so under euid 0 the server runs as the
`postgres` user (runuser) and the temp dir is chowned to it. PostgresUnavailable (a RuntimeError)
means the binaries are missing: a test may skip on it. Every wait has a deadline (pg_ctl -w -t).

Run directly for a self-test: python3 tests/integration/pg.py
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

PREFERRED_BINDIR = "/usr/lib/postgresql/15/bin"
SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or, as root, the postgres user or runuser) are missing."""


def _has_tools(d):
    return all(os.access(os.path.join(d, t), os.X_OK) for t in ("initdb", "pg_ctl"))


def find_bindir():
    env = os.environ.get("PML_POSTGRES_BINDIR")
    if env:
        if _has_tools(env):
            return env
        raise PostgresUnavailable(f"PML_POSTGRES_BINDIR={env} has no initdb and pg_ctl")
    if _has_tools(PREFERRED_BINDIR):
        return PREFERRED_BINDIR
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        version = os.path.basename(os.path.dirname(d))
        if version.isdigit() and _has_tools(d):
            found.append((int(version), d))
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin; install "
            "the `postgresql` package (scripts/install-deps.sh) or set PML_POSTGRES_BINDIR")
    return max(found)[1]


def _free_port():
    # The server listens only on its unix socket, whose name carries the port; a distinct number
    # also keeps its System V shared memory key apart from other clusters'.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_dir():
    # /dev/shm when it is a tmpfs with room (initdb is several times faster there), else the temp
    # dir; unix socket paths are limited to 107 bytes, so a long $TMPDIR is passed over too.
    try:
        st = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= 512 << 20:
            return "/dev/shm"
    except OSError:
        pass
    base = tempfile.gettempdir()
    return base if len(base) <= 64 else "/tmp"


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class LocalPostgres:
    """Context manager: .url is "postgresql:///postgres?host=<dir>&port=<n>&user=postgres"."""

    def __init__(self):
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        self.runuser = None
        if self.as_root:
            self.runuser = shutil.which("runuser") or next(
                (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None)
            if self.runuser is None:
                raise PostgresUnavailable("running as root needs runuser (util-linux)")
            try:
                self.pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no `postgres` user to "
                                          "run the server as") from None
        self.dir = None
        self.port = None
        self.url = None
        self._started = False

    def _run(self, tool, *args, log, timeout=120):
        argv = [os.path.join(self.bindir, tool), *args]
        if self.as_root:
            argv = [self.runuser, "-u", SERVER_USER, "--", *argv]
        with open(log, "ab") as out:
            # cwd: the server user may not be allowed into ours.
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=self.dir,
                                  timeout=timeout).returncode

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="pml_pg_", dir=_base_dir())
        try:
            if self.as_root:
                os.chown(self.dir, self.pw.pw_uid, self.pw.pw_gid)
            data = os.path.join(self.dir, "data")
            log = os.path.join(self.dir, "initdb.log")
            rc = self._run("initdb", "-D", data, "-U", SERVER_USER, "-A", "trust", "-E", "UTF8",
                           "--locale=C", "--no-sync", "--no-instructions", log=log)
            if rc != 0:
                raise RuntimeError(f"initdb failed (exit {rc}): {_tail(log)}")
            self.port = _free_port()
            with open(os.path.join(data, "postgresql.conf"), "a") as conf:
                conf.write("\n# pml LocalPostgres: unix socket only, durability off\n"
                           "listen_addresses = ''\n"
                           f"port = {self.port}\n"
                           f"unix_socket_directories = '{self.dir}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "shared_buffers = 16MB\nmax_connections = 30\n")
            self._started = True
            log = os.path.join(self.dir, "pg_ctl.log")
            server_log = os.path.join(self.dir, "server.log")
            rc = self._run("pg_ctl", "-D", data, "-l", server_log, "-w", "-t", "60", "-s", "start",
                           log=log)
            if rc != 0:
                raise RuntimeError(f"pg_ctl start failed (exit {rc}): {_tail(log)} | "
                                   f"{_tail(server_log)}")
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql:///postgres?host={self.dir}&port={self.port}&user={SERVER_USER}"
        return self

    def stop(self):
        if self.dir is None:
            return
        if self._started:
            self._started = False
            data = os.path.join(self.dir, "data")
            try:
                rc = self._run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "-s",
                               "stop", log=os.path.join(self.dir, "pg_ctl.log"), timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                rc = -1
            if rc != 0:
                # Last resort, so that no server outlives the test.
                try:
                    with open(os.path.join(data, "postmaster.pid")) as f:
                        os.kill(int(f.readline().strip()), 9)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self.url = None

    def psql(self, sql):
        """Runs `sql` with psql and returns its unaligned output (for test assertions)."""
        out = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-A", "-t", "-v",
                              "ON_ERROR_STOP=1", "-d", self.url, "-c", sql],
                             check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


if __name__ == "__main__":
    with LocalPostgres() as pg:
        assert pg.psql("SELECT 6 * 7") == "42", "psql did not answer"
        assert pg.psql("SHOW listen_addresses") == "", "server listens on TCP"
        d = pg.dir
        print(f"ok: {pg.url}")
    assert not os.path.exists(d), f"{d} left behind"
    print("ok: stopped and removed")
