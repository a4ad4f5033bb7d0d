"""The whole flow in real VMs (issue 9): libvirtd, pml-verifier (trusting the simulated TEE),
pml-kms and pml-vmm on loopback with the dev PKI; the guest image built by deploy/image; then,
with pmlctl:
  1. a policy for the app and the app's CVM (mode none: the guest agent uses the SIMULATED TDX);
  2. the guest boots under QEMU (TCG), the agent measures the app, gets its keys from the KMS over
     the network (QEMU user networking: the host's loopback is 10.0.2.2), and starts the app;
  3. from the host, @phala/dstack-sdk's DstackClient on the forwarded port gets a quote for a fresh
     nonce and an Attest bundle, which pml-verifier appraises under the policy;
  4. a second CVM whose compose hash is not in the policy is refused its keys (audited with the
     reason) and its app never starts;
  5. the app serves HTTPS with an RA-TLS certificate from the agent; `pmlctl verify endpoint`
     appraises it; a plain self-signed certificate on the same port is refused;
  6. vm logs / ls / stop / rm, and nothing is left in libvirt;
  and Debian's Prometheus scrapes all four services (the guest agent through a forwarded port).

Run as root with Debian's /usr/bin/python3 (PML_BUILD_DIR, PML_SHARED_DIR as for tests/integration).
"""
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import libvirtd  # noqa: E402
from verifier_test import att, call, channel  # noqa: E402
import importlib  # noqa: E402
evpb = importlib.import_module("pml.common.v1.evidence_pb2")

PREFIX = f"e2e{os.getpid()}"
NODE_DIR = os.path.join(ROOT, "tests", "node")

APP_SCRIPT = r"""set -e
mkdir -p /run/app
pml-guest-agent tls-key --dstack-socket /var/run/dstack.sock --subject e2e-app \
  --alt-name localhost --ra-tls --key-out /run/app/key.pem --cert-out /run/app/cert.pem
echo "e2e-app: serving https on 8443"
exec openssl s_server -accept 8443 -key /run/app/key.pem -cert /run/app/cert.pem \
  -cert_chain /run/app/cert.pem -www -quiet
"""

SDK_JS = r"""
const { DstackClient } = require('@phala/dstack-sdk');
const client = new DstackClient(process.env.ENDPOINT);
(async () => {
  const q = await client.getQuote(Buffer.from(process.env.NONCE, 'hex'));
  const a = await client.attest(Buffer.from(process.env.NONCE, 'hex'));
  const info = await client.info();
  console.log(JSON.stringify({ quote: q.quote, event_log: q.event_log, replayed: q.replayRtmrs(),
                               attestation: a.attestation, info }));
})().catch((e) => { console.log(JSON.stringify({ fatal: String(e && e.stack || e) })); process.exit(1); });
"""


free_port = harness.free_port


def compact(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class EndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.lv = libvirtd.Libvirtd()
        cls.lv.start()
        cls.stack = harness.Stack()
        d = cls.stack.dir
        # The guest image, built as the product builds it.
        cls.images = os.path.join(d, "images")
        os.makedirs(cls.images)
        subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "image", "build_image.py"),
                        "--variant", "production", "--out", os.path.join(cls.images, "pml-prod"),
                        "--agent", harness.binary("services/guest-agent/pml-guest-agent")],
                       check=True, capture_output=True, text=True, timeout=600)
        print(f"\n  image built: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        cls.verifier = harness.start_simulated_verifier(cls.stack)
        cls.kms_guest_port = free_port()
        cls.kms = cls.stack.start("kms", extra_args=[
            "--state-dir", os.path.join(d, "kms"),
            "--guest-listen", f"127.0.0.1:{cls.kms_guest_port}",
            "--guest-tls-names", "10.0.2.2,127.0.0.1,localhost",
            "--verifier", cls.verifier.addr,
            "--verifier-cert", os.path.join(cls.stack.pki, "kms.pem"),
            "--verifier-key", os.path.join(cls.stack.pki, "kms.key")])
        cls.vmm = cls.stack.start("vmm", extra_args=[
            "--libvirt-uri", libvirtd.URI, "--state-dir", os.path.join(d, "vmm"),
            "--images-dir", cls.images, "--virt-type", libvirtd.domain_type()])
        cls.prometheus = None

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.prometheus is not None:
                cls.prometheus.terminate()
                cls.prometheus.wait(timeout=20)
            libvirtd.cleanup_domains(f"pml-{PREFIX}")
        finally:
            cls.stack.close()
            cls.lv.stop()

    # ---- helpers ----

    def ctl(self, *args, svc=None, check=True, timeout=180):
        argv = [harness.binary("tools/pmlctl/pmlctl"), *args]
        if svc is not None:
            argv += ["--addr", svc.addr, "--pki-dir", self.stack.pki]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            self.fail(f"pmlctl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def write(self, name, text):
        path = os.path.join(self.stack.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def console(self, vm_id):
        return self.ctl("vm", "logs", vm_id, svc=self.vmm).stdout

    def wait_console(self, vm_id, needle, timeout, fail_on=()):
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.console(vm_id)
            if needle in text:
                return text
            for bad in fail_on:
                if bad in text:
                    self.fail(f"console of {vm_id} shows {bad!r}:\n{text[-4000:]}")
            time.sleep(1)
        self.fail(f"no {needle!r} on the console of {vm_id} after {timeout}s:\n{text[-4000:]}")

    def create_vm(self, name, compose_path, ports, app_id=None):
        args = ["vm", "create", "--name", name, "--image", "pml-prod", "--tee", "none",
                "--app-compose", compose_path, "--vcpus", "1", "--memory", "1G", "--disk", "1G",
                "--kms-url", f"https://10.0.2.2:{self.kms_guest_port}", "--start", "--json"]
        for p in ports:
            args += ["--port", p]
        if app_id:
            args += ["--app-id", app_id]
        out = self.ctl(*args, svc=self.vmm, timeout=300)
        return json.loads(out.stdout)["vm"]

    def metrics(self, svc):
        return urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics",
                                      timeout=10).read().decode()

    def prom_query(self, port, expr):
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return json.loads(urllib.request.urlopen(url, timeout=10).read())

    # ---- the flow ----

    def test_the_whole_flow(self):
        t0 = time.monotonic()
        # 1. The app, its policy, its CVM.
        info = json.loads(self.ctl("kms", "info", "--json", svc=self.kms).stdout)
        kpid = info.get("key_provider_id") or info.get("keyProviderId")
        self.assertTrue(kpid, info)
        compose = compact({"name": "e2e-app", "runner": "bash", "bash_script": APP_SCRIPT,
                           "kms_enabled": True, "key_provider": "kms", "key_provider_id": kpid})
        compose_path = self.write("app-compose.json", compose)
        compose_hash = hashlib.sha256(compose.encode()).hexdigest()
        app_id = compose_hash[:40]
        out = json.loads(self.ctl("vm", "compose-hash", "--app-compose", compose_path, "--json").stdout)
        self.assertEqual(base64.b64decode(out["compose_hash"]).hex(), compose_hash)  # proto JSON
        policy = {"allow_any_os": True, "allowed_compose_hashes": [compose_hash],
                  "allowed_app_ids": [app_id], "allow_simulated": True,
                  "require_event_log": True,
                  "allowed_image_variants": ["production"]}
        self.ctl("policy", "put", "e2e-app", self.write("policy.json", json.dumps(policy)),
                 svc=self.verifier)
        # RA-TLS certificates carry quote, event log and app id but no image variant (dstack's
        # extensions have none), so the endpoint check's policy accepts either variant.
        endpoint_policy = dict(policy, allowed_image_variants=["production", "development"])
        self.ctl("policy", "put", "e2e-endpoint",
                 self.write("endpoint-policy.json", json.dumps(endpoint_policy)), svc=self.verifier)
        self.ctl("kms", "policy", "put", "--app-id", app_id, "--verifier-policy", "e2e-app",
                 svc=self.kms)
        agent_port, https_port, agent_metrics = free_port(), free_port(), free_port()
        vm = self.create_vm(f"{PREFIX}-app", compose_path,
                            [f"tcp:127.0.0.1:{agent_port}:8090",
                             f"tcp:127.0.0.1:{https_port}:8443",
                             f"tcp:127.0.0.1:{agent_metrics}:9464"])
        self.assertEqual(vm["state"], "VM_STATE_RUNNING")
        vm_id = vm["id"]

        # 2. The guest boots, gets its keys from the KMS and starts the app.
        text = self.wait_console(vm_id, "e2e-app: serving https", 420,
                                 fail_on=("guest agent exited",))
        self.assertIn("SIMULATED", text)
        print(f"  app serving {time.monotonic() - t0:.1f} s after create", file=sys.stderr)

        # 3. The user-side check: the real SDK on the forwarded port, fresh nonce.
        nonce = secrets.token_bytes(32)
        env = dict(os.environ, ENDPOINT=f"http://127.0.0.1:{agent_port}", NONCE=nonce.hex())
        r = subprocess.run(["node", "-e", SDK_JS], cwd=NODE_DIR, env=env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        sdk = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertNotIn("fatal", sdk)
        quote = bytes.fromhex(sdk["quote"])
        rtmrs = [quote[48 + 328 + 48 * i: 48 + 376 + 48 * i].hex() for i in range(4)]
        self.assertEqual(sdk["replayed"], rtmrs)  # the event log replays to the quoted RTMRs
        bundle_bytes = bytes.fromhex(sdk["attestation"])
        with channel(self.stack, self.verifier, role="viewer") as ch:
            res = call(ch, "Appraise", att.AppraiseRequest(
                evidence=evpb.EvidenceBundle.FromString(bundle_bytes),
                binding=att.ReportDataBinding(purpose=att.REPORT_DATA_PURPOSE_NONCE, value=nonce),
                policy_id="e2e-app", omit_token=True), att.AppraiseResponse)
        self.assertTrue(res.allowed, res)
        self.assertTrue(res.simulated)
        self.assertEqual(res.app_info.compose_hash.hex(), compose_hash)
        self.assertEqual(res.app_info.app_id.hex(), app_id)
        # The image variant the image's init states reaches the bundle and the verifier's claims
        # (and the KMS's policy above allows only production).
        self.assertEqual(evpb.EvidenceBundle.FromString(bundle_bytes).app_info.image_variant,
                         evpb.IMAGE_VARIANT_PRODUCTION)
        self.assertEqual(json.loads(res.devices[0].claims_json)["pml_image_variant"], "production")
        self.assertEqual(sdk["info"]["tcb_info"]["image_variant"]
                         if isinstance(sdk["info"]["tcb_info"], dict)
                         else json.loads(sdk["info"]["tcb_info"])["image_variant"], "production")

        # 4. A CVM whose compose hash is not in the policy (same app id, another script).
        bad = compact({"name": "e2e-app", "runner": "bash",
                       "bash_script": "echo 'e2e-bad: APP STARTED'; sleep 100000",
                       "kms_enabled": True, "key_provider": "kms", "key_provider_id": kpid})
        bad_hash = hashlib.sha256(bad.encode()).hexdigest()
        bad_vm = self.create_vm(f"{PREFIX}-bad", self.write("bad-compose.json", bad), [],
                                app_id=app_id)
        text = self.wait_console(bad_vm["id"], "guest agent exited", 420)
        self.assertNotIn("e2e-bad: APP STARTED", text)
        # --check: every row of the deployment verifies in its node's audit chain (exit 1 if not).
        audit = self.ctl("kms", "audit", "--json", "--check", svc=self.kms).stdout
        refusals = [l for l in audit.splitlines() if bad_hash[:16] in l or "compose" in l.lower()]
        self.assertTrue(any("refus" in l.lower() or "denied" in l.lower() or "REFUS" in l
                            for l in audit.splitlines()), audit[-3000:])
        self.assertTrue(refusals, audit[-3000:])

        # Prometheus scrapes all four services; a key-release counter and a VM-state gauge have
        # the values this test caused.
        self.check_prometheus(agent_metrics)

        # 5. End-to-end encryption to the app: RA-TLS, appraised by pmlctl.
        out = self.ctl("verify", "endpoint", f"https://127.0.0.1:{https_port}",
                       "--policy-id", "e2e-endpoint", "--as", "viewer", svc=self.verifier)
        self.assertIn("ALLOWED", out.stdout)
        self.assertIn("binding:", out.stdout)

        # 6. logs, ls, stop, rm; nothing left in libvirt.
        ls = json.loads(self.ctl("vm", "ls", "--json", svc=self.vmm).stdout)
        self.assertEqual({v["name"] for v in ls["vms"]}, {f"{PREFIX}-app", f"{PREFIX}-bad"})
        for v in (vm_id, bad_vm["id"]):
            out = json.loads(self.ctl("vm", "stop", v, "--json", svc=self.vmm).stdout)
            self.assertEqual(out["vm"]["state"], "VM_STATE_STOPPED")
            self.ctl("vm", "rm", v, svc=self.vmm)
        self.assertEqual([d for d in libvirtd.list_domains() if d.startswith(f"pml-{PREFIX}")], [])

        # A plain self-signed certificate on the same port is refused.
        key, cert = (os.path.join(self.stack.dir, n) for n in ("plain.key", "plain.pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-subj", "/CN=localhost", "-days", "1"], check=True, capture_output=True)
        plain = subprocess.Popen(["openssl", "s_server", "-accept", str(https_port), "-cert", cert,
                                  "-key", key, "-www", "-quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def listening():
                try:
                    socket.create_connection(("127.0.0.1", https_port), 1).close()
                    return True
                except OSError:
                    return False
            harness.wait_for(listening, 20, "openssl s_server")
            out = self.ctl("verify", "endpoint", f"https://127.0.0.1:{https_port}",
                           "--policy-id", "e2e-endpoint", "--as", "viewer", svc=self.verifier,
                           check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("no RA-TLS evidence", out.stdout + out.stderr)
        finally:
            plain.terminate()
            plain.wait(timeout=10)
        print(f"  whole flow: {time.monotonic() - t0:.1f} s", file=sys.stderr)

    def check_prometheus(self, agent_metrics_port):
        d = os.path.join(self.stack.dir, "prometheus")
        os.makedirs(d)
        port = free_port()
        targets = {"pml-verifier": self.verifier.metrics_port, "pml-kms": self.kms.metrics_port,
                   "pml-vmm": self.vmm.metrics_port, "pml-guest-agent": agent_metrics_port}
        with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
            config = f.read()
        # The shipped config with this run's ports and a 1 s scrape interval.
        for job, p in targets.items():
            config = re.sub(rf"(job_name: {job}\n\s+static_configs:\n\s+- targets: \[\")[^\"]+",
                            rf"\g<1>127.0.0.1:{p}", config)
        config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
        shutil.copy(os.path.join(ROOT, "deploy", "prometheus", "alerts.yml"), d)
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write(config)
        log = open(os.path.join(d, "log"), "w")
        type(self).prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/data",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

        def all_up():
            try:
                r = self.prom_query(port, "up")
            except OSError:
                return False
            got = {s["metric"]["job"]: s["value"][1] for s in r["data"]["result"]}
            return got if all(got.get(j) == "1" for j in targets) else False
        harness.wait_for(all_up, 60, "Prometheus to scrape every service")

        def settled():
            rel = self.prom_query(port, 'pml_kms_key_releases_total{operation="get_app_keys",'
                                        'result="released"}')["data"]["result"]
            ref = self.prom_query(port, 'pml_kms_key_releases_total{operation="get_app_keys",'
                                        'result="refused"}')["data"]["result"]
            run = self.prom_query(port, 'pml_vmm_vms{state="running"}')["data"]["result"]
            vals = [x[0]["value"][1] if x else None for x in (rel, ref, run)]
            return vals if vals == ["1", "1", "2"] else False
        harness.wait_for(settled, 30, "key releases 1, refusals 1 and 2 running VMs in Prometheus")
        # Every Grafana panel's expression is valid against the live data.
        with open(os.path.join(ROOT, "deploy", "grafana", "pml-dashboard.json")) as f:
            dash = json.load(f)
        for panel in dash["panels"]:
            for t in panel["targets"]:
                self.assertEqual(self.prom_query(port, t["expr"])["status"], "success", t["expr"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
