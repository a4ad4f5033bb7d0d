"""Starts PML services on loopback with a development PKI, for integration and e2e tests.

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). Every wait is a
condition with a deadline; nothing sleeps blindly. Ports are chosen by the services (port 0) and
read back from their --ready-file.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD_DIR = os.environ.get("PML_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BUILD_DIR = os.path.abspath(BUILD_DIR)

SERVICES = {
    # name: (binary path relative to build dir, server cert stem)
    "verifier": ("services/attestation/pml-verifier", "server-verifier"),
    "kms": ("services/kms/pml-kms", "server-kms"),
    "vmm": ("services/vmm/pml-vmm", "server-vmm"),
    "guest-agent": ("services/guest-agent/pml-guest-agent", "server-guest-agent"),
}


def binary(rel):
    path = os.path.join(BUILD_DIR, rel)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not built (set PML_BUILD_DIR)")
    return path


def pmlctl(*args, check=True, capture=True):
    return subprocess.run([binary("tools/pmlctl/pmlctl"), *args], check=check,
                          capture_output=capture, text=True, timeout=60)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Service:
    def __init__(self, name, proc, ready, log_path):
        self.name = name
        self.proc = proc
        self.grpc_port = ready["grpc_port"]
        self.metrics_port = ready["metrics_port"]
        self.log_path = log_path

    @property
    def addr(self):
        return f"127.0.0.1:{self.grpc_port}"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def default_args(stack, name):
    """What a service needs beyond the common flags to start on its own in development mode:
    pml-kms a verifier (the stack's, started first), its key-release port and a state dir;
    pml-guest-agent the simulated TEE, a booted app and local-dev keys; pml-vmm libvirt's test
    driver, a state dir and an (empty) image dir."""
    d = stack.dir
    if name == "kms":
        return ["--state-dir", os.path.join(d, "kms-state"),
                "--guest-listen", f"127.0.0.1:{free_port()}",
                "--verifier", stack.services["verifier"].addr,
                "--verifier-cert", os.path.join(stack.pki, "kms.pem"),
                "--verifier-key", os.path.join(stack.pki, "kms.key")]
    if name == "guest-agent":
        compose = os.path.join(d, "default-app-compose.json")
        with open(compose, "w") as f:
            f.write('{"name":"default","runner":"bash","bash_script":"true"}')
        return ["boot", "--tee", "simulated", "--state-dir", os.path.join(d, "guest-state"),
                "--app-compose", compose, "--key-provider", "local-dev"]
    if name == "vmm":
        images = os.path.join(d, "vmm-images")
        os.makedirs(images, exist_ok=True)
        return ["--libvirt-uri", "test:///default", "--state-dir", os.path.join(d, "vmm-state"),
                "--images-dir", images]
    return []


def start_simulated_verifier(stack, name="verifier"):
    """pml-verifier trusting the SIMULATED TEE (development and tests only), offline, with the
    simulated platform's collateral imported into its cache (pmlctl dev simulated-collateral)."""
    from verifier_test import att, call, channel  # generates the stubs on first import
    d = stack.dir
    svc = stack.start(name, extra_args=[
        "--state-dir", os.path.join(d, name), "--offline", "--trust-simulated-tee",
        "--collateral-cache-dir", os.path.join(d, name + "-cache")])
    collateral = os.path.join(d, "simulated-collateral.json")
    pmlctl("dev", "simulated-collateral", "--out", collateral)
    with open(collateral, "rb") as f, channel(stack, svc) as ch:
        call(ch, "RefreshCollateral", att.RefreshCollateralRequest(import_collateral_json=f.read()),
             att.RefreshCollateralResponse)
    return svc


class Stack:
    """A temp dir with a dev PKI and the services started in it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pml-it-")
        self.pki = os.path.join(self.dir, "pki")
        self.services = {}
        pmlctl("pki", "init", "--dir", self.pki)

    def start(self, name, extra_args=(), cert_reload_seconds=1):
        rel, stem = SERVICES[name]
        ready = os.path.join(self.dir, f"{name}.ready")
        log_path = os.path.join(self.dir, f"{name}.log")
        args = [binary(rel), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                "--tls-cert", os.path.join(self.pki, f"{stem}.pem"),
                "--tls-key", os.path.join(self.pki, f"{stem}.key"),
                "--tls-ca", os.path.join(self.pki, "ca.pem"),
                "--cert-reload-seconds", str(cert_reload_seconds),
                "--ready-file", ready, *extra_args]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        def is_ready():
            if proc.poll() is not None:
                with open(log_path) as f:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n" + f.read())
            if os.path.exists(ready):
                with open(ready) as f:
                    return json.load(f)
            return None
        r = wait_for(is_ready, 30, f"{name} to be ready")
        svc = Service(name, proc, r, log_path)
        self.services[name] = svc
        return svc

    def stop(self, name, timeout=20):
        svc = self.services.pop(name)
        svc.proc.send_signal(signal.SIGTERM)
        try:
            return svc.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            raise

    def close(self):
        codes = {}
        for name in list(self.services):
            codes[name] = self.stop(name)
        if os.environ.get("PML_KEEP_TMP"):
            print(f"kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return codes

    def cert(self, stem):
        return os.path.join(self.pki, stem)
