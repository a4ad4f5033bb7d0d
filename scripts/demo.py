"""The README's main command, after install and build (scripts/demo.sh): starts the four PML
services, builds the guest image, boots one demo CVM under libvirt + QEMU, and prints a verified
attestation of it. DEVELOPMENT MODE throughout: a development PKI, services on 127.0.0.1, SQLite,
and a CVM in TEE mode `none` whose guest agent uses the SIMULATED TDX (no TDX on this host).

  scripts/demo.sh                  boot, verify, clean up
  scripts/demo.sh --keep-running   leave everything running until Ctrl-C
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import libvirtd  # noqa: E402

APP_SCRIPT = r"""set -e
mkdir -p /run/app
pml-guest-agent tls-key --dstack-socket /var/run/dstack.sock --subject demo-app \
  --alt-name localhost --ra-tls --key-out /run/app/key.pem --cert-out /run/app/cert.pem
echo "demo-app: serving https on 8443"
exec openssl s_server -accept 8443 -key /run/app/key.pem -cert /run/app/cert.pem \
  -cert_chain /run/app/cert.pem -www -quiet
"""


def step(text):
    print(f"==> {text}", flush=True)


free_port = harness.free_port


def pmlctl(stack, svc, *args, check=True, timeout=300):
    r = subprocess.run([harness.binary("tools/pmlctl/pmlctl"), *args, "--addr", svc.addr,
                        "--pki-dir", stack.pki], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"pmlctl {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def main():
    keep = "--keep-running" in sys.argv
    step("DEVELOPMENT MODE: development PKI, services on 127.0.0.1, SQLite, SIMULATED TDX in a "
         "CVM without a TEE (this host has no TDX)")
    lv = libvirtd.Libvirtd()
    lv.start()
    step(f"libvirtd at {lv.uri} ({'already running' if lv.reused else 'started for the demo'})")
    stack = harness.Stack()
    vm_id = None
    ok = False
    try:
        d = stack.dir
        images = os.path.join(d, "images")
        step("building the guest image (deploy/image/build-image.sh --variant production)")
        subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "image", "build_image.py"),
                        "--variant", "production", "--out", os.path.join(images, "pml-prod"),
                        "--agent", harness.binary("services/guest-agent/pml-guest-agent")],
                       check=True, timeout=600)
        verifier = harness.start_simulated_verifier(stack)
        step(f"pml-verifier on {verifier.addr} (trusts the SIMULATED TEE: development only)")
        kms_port = free_port()
        kms = stack.start("kms", extra_args=[
            "--state-dir", os.path.join(d, "kms"), "--guest-listen", f"127.0.0.1:{kms_port}",
            "--guest-tls-names", "10.0.2.2,127.0.0.1,localhost", "--verifier", verifier.addr,
            "--verifier-cert", os.path.join(stack.pki, "kms.pem"),
            "--verifier-key", os.path.join(stack.pki, "kms.key")])
        step(f"pml-kms on {kms.addr} (guests reach its key release at 10.0.2.2:{kms_port})")
        vmm = stack.start("vmm", extra_args=[
            "--libvirt-uri", libvirtd.URI, "--state-dir", os.path.join(d, "vmm"),
            "--images-dir", images, "--virt-type", libvirtd.domain_type()])
        step(f"pml-vmm on {vmm.addr} (libvirt {libvirtd.URI}, domain type "
             f"{libvirtd.domain_type()})")

        kpid = json.loads(pmlctl(stack, kms, "kms", "info", "--json").stdout)["key_provider_id"]
        compose = json.dumps({"name": "demo-app", "runner": "bash", "bash_script": APP_SCRIPT,
                              "kms_enabled": True, "key_provider": "kms",
                              "key_provider_id": kpid}, sort_keys=True, separators=(",", ":"))
        compose_path = os.path.join(d, "app-compose.json")
        with open(compose_path, "w") as f:
            f.write(compose)
        compose_hash = hashlib.sha256(compose.encode()).hexdigest()
        app_id = compose_hash[:40]
        policy = {"allow_any_os": True, "allowed_compose_hashes": [compose_hash],
                  "allowed_app_ids": [app_id], "allow_simulated": True, "require_event_log": True,
                  "allowed_image_variants": ["production", "development"]}
        policy_path = os.path.join(d, "policy.json")
        with open(policy_path, "w") as f:
            json.dump(policy, f)
        pmlctl(stack, verifier, "policy", "put", "demo-app", policy_path)
        pmlctl(stack, kms, "kms", "policy", "put", "--app-id", app_id,
               "--verifier-policy", "demo-app")
        step(f"policy demo-app: compose hash {compose_hash}, app id {app_id}")

        https_port, agent_port = free_port(), free_port()
        out = pmlctl(stack, vmm, "vm", "create", "--name", f"demo{os.getpid()}", "--image",
                     "pml-prod", "--tee", "none", "--app-compose", compose_path, "--vcpus", "1",
                     "--memory", "1G", "--disk", "1G", "--kms-url",
                     f"https://10.0.2.2:{kms_port}", "--port",
                     f"tcp:127.0.0.1:{https_port}:8443", "--port",
                     f"tcp:127.0.0.1:{agent_port}:8090", "--start", "--json")
        vm_id = json.loads(out.stdout)["vm"]["id"]
        step(f"CVM {vm_id} created and started; waiting for it to boot, get its keys from the "
             f"KMS and start the app (QEMU without KVM: about a minute)")
        t0 = time.monotonic()
        seen = 0
        while True:
            text = pmlctl(stack, vmm, "vm", "logs", vm_id).stdout
            for line in text[seen:].splitlines():
                if line.startswith("pml-image:") or "agent_ready" in line or "demo-app:" in line \
                        or "error" in line:
                    print(f"  [{time.monotonic() - t0:5.1f}s] {line[:160]}", flush=True)
            seen = len(text)
            if "demo-app: serving" in text:
                break
            if "guest agent exited" in text or time.monotonic() - t0 > 600:
                raise RuntimeError("the CVM did not start its app; console above")
            time.sleep(1)
        step(f"verifying the app at https://127.0.0.1:{https_port} (pmlctl verify endpoint: the "
             f"RA-TLS certificate's quote, bound to its TLS key, appraised under demo-app)")
        deadline = time.monotonic() + 60
        while True:  # the app prints its line just before openssl starts listening
            r = pmlctl(stack, verifier, "verify", "endpoint", f"https://127.0.0.1:{https_port}",
                       "--policy-id", "demo-app", "--as", "viewer", check=False)
            if "UNAVAILABLE" not in r.stderr or time.monotonic() > deadline:
                break
            time.sleep(1)
        print(r.stdout + r.stderr, end="", flush=True)
        ok = r.returncode == 0
        step(("VERIFIED" if ok else "NOT VERIFIED") + " (simulated TEE: development only)")
        if keep:
            step(f"running; the CVM's dstack API (public part) is at http://127.0.0.1:{agent_port}"
                 f"; try: build/tools/pmlctl/pmlctl vm ls --addr {vmm.addr} --pki-dir "
                 f"{stack.pki}   (Ctrl-C stops)")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        if vm_id and "vmm" in stack.services:
            pmlctl(stack, stack.services["vmm"], "vm", "rm", vm_id, "--force", check=False)
        codes = stack.close()
        lv.stop()
        step("stopped: " + ", ".join(f"pml-{n} exit {c}" for n, c in codes.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    if "--keep-running" in sys.argv:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
