"""pml-guest-agent (issue 6) with the simulated TEE, booted by `pml-guest-agent boot` (local-dev key
provider, two simulated GPUs), driven by the real @phala/dstack-sdk from npm
(tests/node/dstack_sdk_client.js), by raw HTTP and by gRPC (unix socket and TCP mTLS):
 - the SDK's own checks pass (quote report data, replayRtmrs() equal to the quote's RTMRs, getKey
   stability, Info, emitEvent, sign/verify, TappdClient.tdxQuote('test'), getTlsKey, attest,
   TappdClient.deriveKey); keys and identity survive a restart WITHOUT `boot` (serve-only), which
   emits no second set of boot events; serve-only on an unbooted state dir is refused;
 - the boot events are in the log in order and replay to RTMR3;
 - getTlsKey's chain passes `openssl verify`, its leaf holds the private key's public key, and its
   RA-TLS extensions (parsed with python3-cryptography) carry a quote whose report data is
   SHA-512("ratls-cert:" || SPKI DER), which `pmlctl verify quote --trust-simulated-tee` verifies
   (with simulated collateral built here from lib/tee's public labels) and whose RTMR3 the embedded
   event log replays to; the key-provider event names the chain's root key;
 - /Attest's EvidenceBundle (decoded with protoc-generated stubs) binds the report data and two
   GPU reports (nonce SHA-256("pml-gpu-nonce:" || report data)) and is allowed by a pml-verifier
   started with --trust-simulated-tee under a policy pinning the compose hash and app id, and
   refused for the wrong report data or without allow_simulated;
 - gRPC on the unix socket serves every method (GetQuote zero-pads, GetKey is stable and matches
   the dstack socket's, GetInfo, EmitEvent's rtmr3 equals the next quote's, Sign/Verify ed25519);
   over TCP mTLS the viewer and the operator get quotes but GetKey/GetTlsKey/EmitEvent/Sign answer
   PERMISSION_DENIED;
 - 100 concurrent EmitEvent calls leave a log that replays exactly to RTMR3; bad input (oversized
   body, half-sent request, non-hex, unknown algorithm, bad alt name, boot event name) gets a clear
   error and the agent keeps serving;
 - --dstack-http-listen (issue 9: the host reaches the guest only through a forwarded TCP port):
   the SDK's DstackClient('http://127.0.0.1:PORT') gets a quote for fresh report data, which
   `pmlctl verify quote` verifies, and info(); getKey/getTlsKey/emitEvent/sign answer 403 with a
   JSON error and leave the log alone;
 - `pml-guest-agent tls-key` writes a key (0600) and a chain that `openssl verify` accepts, with
   the RA-TLS quote binding the key under --ra-tls and none without; errors are one line, exit 1;
 - the KMS key provider without kms-root-ca.pem in the config dir (what the VMM delivers): the
   agent fetches the identity CA from a real pml-kms (kms_urls "https://...") and boots with its
   keys when its SPKI is the app's key_provider_id; a CVM pinning another SPKI refuses to boot,
   naming both values, and the KMS never sees its evidence.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/guest_agent_test.py
"""
import hashlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
# verifier_test generates the pml.common/attestation stubs into GEN at import (and puts GEN on the
# path); the guest stubs are added to the same place.
from verifier_test import GEN, att, call, channel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
NODE_DIR = os.path.join(ROOT, "tests", "node")

subprocess.run(["protoc", f"-I{ROOT}/proto", "-I/usr/include", f"--python_out={GEN}",
                "pml/guest/v1/guest.proto", "pml/kms/v1/kms.proto"], check=True)
gpb = importlib.import_module("pml.guest.v1.guest_pb2")
kpb = importlib.import_module("pml.kms.v1.kms_pb2")
evpb = importlib.import_module("pml.common.v1.evidence_pb2")
GUEST_SVC = "/pml.guest.v1.GuestAgent/"

# RA-TLS extensions (lib/ratls/cert.h, dstack's OIDs under PEN 62397).
OID_QUOTE = x509.ObjectIdentifier("1.3.6.1.4.1.62397.1.1")
OID_EVENT_LOG = x509.ObjectIdentifier("1.3.6.1.4.1.62397.1.2")
OID_APP_ID = x509.ObjectIdentifier("1.3.6.1.4.1.62397.1.3")
OID_USAGE = x509.ObjectIdentifier("1.3.6.1.4.1.62397.1.4")
BOOT_EVENTS = ["system-preparing", "app-id", "compose-hash", "gpu-attestation", "instance-id",
               "boot-mr-done", "key-provider", "system-ready"]


def http(sock_path, path, body, raw=None, timeout=20):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    data = body.encode() if isinstance(body, str) else body
    req = raw if raw is not None else (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    try:
        s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    s.close()
    head, _, payload = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, payload


def tcp_http(port, path, body, timeout=20):
    """POST over TCP (the --dstack-http-listen listener): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        data = body.encode()
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                   f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
                  + data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    head, _, payload = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), payload


# The SDK over TCP, as a host-side client reaches a CVM through QEMU's forwarded port. Prints one
# JSON line; each call's outcome is recorded rather than asserted, so python checks every one.
SDK_TCP_JS = r"""
const { DstackClient } = require('@phala/dstack-sdk');
const client = new DstackClient(process.env.ENDPOINT);
async function outcome(fn) {
  try { return { ok: true, value: await fn() }; } catch (e) { return { ok: false, error: String(e) }; }
}
(async () => {
  const out = {};
  const q = await client.getQuote(Buffer.from(process.env.REPORT_DATA, 'hex'));
  out.quote = q.quote;
  out.event_log = q.event_log;
  out.replayed = q.replayRtmrs();
  out.info = await client.info();
  out.version = await client.version();
  out.get_key = await outcome(() => client.getKey('wallet/eth', 'signing'));
  out.get_tls_key = await outcome(() => client.getTlsKey({ subject: 'x', usageRaTls: true }));
  out.emit_event = await outcome(() => client.emitEvent('tcp-event', 'payload'));
  out.sign = await outcome(() => client.sign('ed25519', 'message'));
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ fatal: String(e && e.stack || e) })); process.exit(1); });
"""


def replay(digests):
    mr = bytes(48)
    for d in digests:
        mr = hashlib.sha384(mr + bytes.fromhex(d)).digest()
    return mr.hex()


def replay_log(event_log_json):
    """RTMR3 (hex) that a dstack event log's IMR 3 entries replay to."""
    return replay([e["digest"] for e in json.loads(event_log_json) if e["imr"] == 3])


# TD report fields of a v4 quote (48-byte header, TD report 1.0 at 48).
def quote_rtmr3(quote):
    return quote[48 + 472:48 + 520].hex()


def quote_report_data(quote):
    return quote[48 + 520:48 + 584]


def pem_certificates(pem):
    """Every certificate of a PEM bundle, in order (python3-cryptography 38 has no
    load_pem_x509_certificates)."""
    marker = b"-----END CERTIFICATE-----"
    blocks = [b + marker for b in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in b]
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def der_octet_string(der):
    """Contents of one DER OCTET STRING (short or long form length; nothing may follow)."""
    assert der[0] == 0x04, f"not an OCTET STRING: tag {der[0]:#x}"
    n, i = der[1], 2
    if n & 0x80:
        k = n & 0x7F
        assert 1 <= k <= 4 and der[2] != 0, "bad long-form length"
        n, i = int.from_bytes(der[2:2 + k], "big"), 2 + k
        assert n >= 0x80, "long form for a short length"
    assert len(der) == i + n, f"length {n} but {len(der) - i} bytes follow"
    return der[i:]


def ext_bytes(cert, oid):
    return der_octet_string(cert.extensions.get_extension_for_oid(oid).value.value)


def spki_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def simulated_collateral(quote=None):
    """collateral.json for lib/tee's simulated platform, as an operator gets it:
    `pmlctl dev simulated-collateral` (pmlctl and pml-verifier take collateral only from outside)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "collateral.json")
        harness.pmlctl("dev", "simulated-collateral", "--out", out)
        with open(out) as f:
            return f.read()



def guest_call(ch, method, req, resp_type, timeout=30):
    stub = ch.unary_unary(GUEST_SVC + method, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=resp_type.FromString)
    return stub(req, timeout=timeout)


class GuestAgentTest(unittest.TestCase):
    latest_sdk = None  # the last SDK run's findings (test_1 sets it; later tests reuse it)

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        d = cls.stack.dir
        cls.compose = os.path.join(d, "app-compose.json")
        with open(cls.compose, "w") as f:
            f.write('{"name":"sdk-test","runner":"docker-compose","docker_compose_file":"x"}')
        with open(cls.compose, "rb") as f:
            cls.compose_hash = hashlib.sha256(f.read()).digest()
        cls.dstack = os.path.join(d, "dstack.sock")
        cls.tappd = os.path.join(d, "tappd.sock")
        cls.grpc_sock = os.path.join(d, "guest.sock")
        # Serve-only flags; `boot` in front runs the boot sequence first (its options fall through).
        cls.http_port = harness.free_port()
        cls.args = ["--tee", "simulated", "--state-dir", os.path.join(d, "agent-state"),
                    "--app-compose", cls.compose, "--dstack-socket", cls.dstack,
                    "--tappd-socket", cls.tappd, "--key-provider", "local-dev",
                    "--gpus", "simulated:2", "--grpc-socket", cls.grpc_sock,
                    "--dstack-http-listen", f"127.0.0.1:{cls.http_port}"]
        cls.svc = cls.stack.start("guest-agent", extra_args=["boot", *cls.args])

    @classmethod
    def tearDownClass(cls):
        codes = cls.stack.close()
        assert all(c == 0 for c in codes.values()), codes

    def sdk(self, phase):
        r = subprocess.run(["node", os.path.join(NODE_DIR, "dstack_sdk_client.js"), self.dstack,
                            self.tappd, phase], cwd=NODE_DIR, capture_output=True, text=True,
                           timeout=120)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, r.stdout + r.stderr)
        out = json.loads(lines[-1])
        self.assertTrue(out.get("ok"), out.get("error", "") + "\n" + self.svc.log()[-3000:])
        GuestAgentTest.latest_sdk = out
        return out

    def sdk_result(self):
        return GuestAgentTest.latest_sdk or self.sdk("first")

    def quote(self, report_data_hex="00"):
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": report_data_hex}))
        self.assertEqual(st, 200, body)
        r = json.loads(body)
        return bytes.fromhex(r["quote"]), r["event_log"]

    def pmlctl_verify(self, quote, *flags):
        with tempfile.TemporaryDirectory(dir=self.stack.dir) as d:
            qf, cf = os.path.join(d, "quote.bin"), os.path.join(d, "collateral.json")
            with open(qf, "wb") as f:
                f.write(quote)
            with open(cf, "w") as f:
                f.write(simulated_collateral(quote))
            r = harness.pmlctl("verify", "quote", qf, "--collateral", cf, "--json", *flags,
                               check=False)
        return r.returncode, (json.loads(r.stdout) if r.stdout.startswith("{") else r.stdout
                              + r.stderr)

    def test_1_sdk_checks_pass_and_survive_a_restart(self):
        first = self.sdk("first")
        self.assertEqual(first["compose_hash"], self.compose_hash.hex())
        self.assertEqual(first["app_id"], first["compose_hash"][:40])
        _, log_before = self.quote()
        self.assertEqual(self.stack.stop("guest-agent"), 0)
        os.remove(os.path.join(self.stack.dir, "guest-agent.ready"))
        # Restart WITHOUT `boot`: the serve-only path reads the booted state.
        type(self).svc = self.stack.start("guest-agent", extra_args=self.args)
        again = self.sdk("again")
        for k in ("key_wallet_eth", "app_id", "instance_id", "compose_hash", "derive_svc_key"):
            self.assertEqual(first[k], again[k], k)
        # Same app key provider: the root of the TLS chains is the same key (certificates are
        # issued again), and the app CA key too.
        for i in (1, 2):
            a, b = (x509.load_pem_x509_certificate(o["tls_chain"][i].encode())
                    for o in (first, again))
            self.assertEqual(spki_der(a.public_key()), spki_der(b.public_key()), i)
        # No second boot: the boot events appear once, and the restart kept the log's prefix.
        _, log_after = self.quote()
        names = [e["event"] for e in json.loads(log_after) if e["imr"] == 3]
        for n in BOOT_EVENTS:
            self.assertEqual(names.count(n), 1, n)
        before = json.loads(log_before)
        self.assertEqual(json.loads(log_after)[:len(before)], before)

    def test_1b_serve_only_refuses_an_unbooted_state_dir(self):
        d = tempfile.mkdtemp(dir=self.stack.dir)
        pki = self.stack.pki
        args = [harness.binary(harness.SERVICES["guest-agent"][0]), "--listen", "127.0.0.1:0",
                "--metrics-listen", "", "--tls-cert", os.path.join(pki, "server-guest-agent.pem"),
                "--tls-key", os.path.join(pki, "server-guest-agent.key"),
                "--tls-ca", os.path.join(pki, "ca.pem"), "--tee", "simulated",
                "--state-dir", os.path.join(d, "state"), "--app-compose", self.compose,
                "--key-provider", "local-dev", "--dstack-socket", os.path.join(d, "d.sock")]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("not booted", r.stdout + r.stderr)

    def test_1c_boot_events_are_logged_in_order_and_replay(self):
        quote, log_json = self.quote()
        log = json.loads(log_json)
        names = [e["event"] for e in log if e["imr"] == 3 and e["event"] in BOOT_EVENTS]
        self.assertEqual(names, BOOT_EVENTS)
        self.assertEqual(replay_log(log_json), quote_rtmr3(quote))
        by_name = {e["event"]: e for e in log}
        self.assertEqual(by_name["compose-hash"]["event_payload"], self.compose_hash.hex())
        self.assertEqual(by_name["app-id"]["event_payload"], self.compose_hash[:20].hex())
        kp = json.loads(bytes.fromhex(by_name["key-provider"]["event_payload"]))
        self.assertEqual(kp["name"], "local-dev")
        # The measured key provider id is the root of the app's TLS chains (SHA-256 of its SPKI).
        root = x509.load_pem_x509_certificate(self.sdk_result()["tls_chain"][2].encode())
        self.assertEqual(kp["id"], hashlib.sha256(spki_der(root.public_key())).hexdigest())

    def test_2_concurrent_emits_replay_exactly_to_rtmr3(self):
        errors = []

        def emit(i):
            st, body = http(self.dstack, "/EmitEvent",
                            json.dumps({"event": f"e{i}", "payload": f"{i:04x}"}))
            if st != 200:
                errors.append((i, st, body))
        threads = [threading.Thread(target=emit, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "00"}))
        self.assertEqual(st, 200, body)
        r = json.loads(body)
        log = json.loads(r["event_log"])
        self.assertEqual(sum(1 for e in log if e["event"].startswith("e")
                             and e["event"][1:].isdigit()), 100)
        quote = bytes.fromhex(r["quote"])
        rtmr3 = quote[48 + 472:48 + 520].hex()
        self.assertEqual(replay([e["digest"] for e in log if e["imr"] == 3]), rtmr3)
        # Each digest is dstack's SHA384(type_le32 ‖ ":" ‖ name ‖ ":" ‖ payload).
        for e in log:
            want = hashlib.sha384((0x08000001).to_bytes(4, "little") + b":" + e["event"].encode()
                                  + b":" + bytes.fromhex(e["event_payload"])).hexdigest()
            self.assertEqual(e["digest"], want, e["event"])

    def test_3_bad_input_is_refused_and_the_agent_keeps_serving(self):
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "aa" * 65}))
        self.assertEqual(st, 400)
        self.assertIn("error", json.loads(body))
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "xyz"}))
        self.assertEqual(st, 400)
        st, body = http(self.dstack, "/GetKey", json.dumps({"path": "a", "algorithm": "rsa"}))
        self.assertEqual(st, 400)
        self.assertIn("rsa", json.loads(body)["error"])
        st, _ = http(self.dstack, "/GetQuote", b"{" + b"a" * (10 << 20))
        self.assertEqual(st, 413)
        st, body = http(self.dstack, "/GetTlsKey", json.dumps(
            {"subject": "app.example", "alt_names": ["a b"], "usage_ra_tls": False}))
        self.assertEqual(st, 400, body)
        self.assertIn("alt_names", json.loads(body)["error"])
        _, log_before = self.quote()
        for name in BOOT_EVENTS:
            st, body = http(self.dstack, "/EmitEvent",
                            json.dumps({"event": name, "payload": "00"}))
            self.assertEqual(st, 400, (name, body))
            self.assertIn("error", json.loads(body))
        _, log_after = self.quote()
        self.assertEqual(log_after, log_before, "a refused EmitEvent changed the log")
        # Half-sent requests and a client that leaves without reading.
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.dstack)
            s.sendall(b"POST /GetQuote HTTP/1.1\r\nContent-Length: 500\r\n\r\n{\"repo")
            s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.dstack)
        s.sendall(b"POST /Info HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        s.close()
        st, body = http(self.dstack, "/Version", "{}")
        self.assertEqual(st, 200, body)
        st, body = http(self.dstack, "/GetTlsKey", json.dumps({"subject": "ok.example"}))
        self.assertEqual(st, 200, body)
        self.assertIsNone(self.svc.proc.poll())

    def test_4_tls_key_chain_verifies_and_its_ra_tls_quote_binds_the_key(self):
        out = self.sdk_result()
        d = tempfile.mkdtemp(dir=self.stack.dir)
        files = {}
        for name, pem in zip(("leaf", "appca", "root"), out["tls_chain"]):
            files[name] = os.path.join(d, name + ".pem")
            with open(files[name], "w") as f:
                f.write(pem)
        r = subprocess.run(["openssl", "verify", "-CAfile", files["root"], "-untrusted",
                            files["appca"], files["leaf"]], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), f"{files['leaf']}: OK")
        # Without the app CA the leaf does not verify (the check above is not vacuous).
        r = subprocess.run(["openssl", "verify", "-CAfile", files["root"], files["leaf"]],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)

        leaf, appca, _ = (x509.load_pem_x509_certificate(p.encode()) for p in out["tls_chain"])
        key = serialization.load_pem_private_key(out["tls_key"].encode(), password=None)
        self.assertIn(b"BEGIN PRIVATE KEY", out["tls_key"].encode())  # PKCS#8
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(spki_der(key.public_key()), spki_der(leaf.public_key()))
        self.assertEqual(leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         "app.example")
        self.assertEqual(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                         .value.get_values_for_type(x509.DNSName), ["app.example"])
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH,
                      leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

        # RA-TLS extensions.
        quote = ext_bytes(leaf, OID_QUOTE)
        log_json = ext_bytes(leaf, OID_EVENT_LOG).decode()
        self.assertEqual(ext_bytes(leaf, OID_APP_ID), self.compose_hash[:20])
        self.assertEqual(ext_bytes(leaf, OID_USAGE), b"app:custom")
        self.assertEqual(ext_bytes(appca, OID_USAGE), b"app:ca")
        self.assertEqual(quote_report_data(quote),
                         hashlib.sha512(b"ratls-cert:" + spki_der(leaf.public_key())).digest())
        self.assertEqual(replay_log(log_json), quote_rtmr3(quote))
        self.assertIn("system-ready", [e["event"] for e in json.loads(log_json)])

        # The quote verifies (simulated root trusted explicitly) ...
        rc, res = self.pmlctl_verify(quote, "--trust-simulated-tee")
        self.assertEqual(rc, 0, res)
        self.assertTrue(res["verified"], res)
        self.assertTrue(res["simulated"], res)
        self.assertEqual(res["td_report"]["report_data"], quote_report_data(quote).hex())
        self.assertEqual(res["td_report"]["rtmr3"], quote_rtmr3(quote))
        # ... and is refused without that trust, or with one changed report-data byte.
        rc, res = self.pmlctl_verify(quote)
        self.assertEqual(rc, 1, res)
        bad = bytearray(quote)
        bad[48 + 520] ^= 1
        rc, res = self.pmlctl_verify(bytes(bad), "--trust-simulated-tee")
        self.assertEqual(rc, 1, res)

        # Tappd.DeriveKey's chain: same root and app CA, the leaf holds the derived key.
        dl, dca, droot = (x509.load_pem_x509_certificate(p.encode())
                          for p in out["derive_svc_chain"])
        self.assertEqual(dca, appca)
        dkey = serialization.load_pem_private_key(out["derive_svc_key"].encode(), password=None)
        self.assertEqual(spki_der(dkey.public_key()), spki_der(dl.public_key()))
        dca.public_key().verify(dl.signature, dl.tbs_certificate_bytes,
                                ec.ECDSA(dl.signature_hash_algorithm))
        # random_seed: a fresh key each time, never the path's derived one.
        keys = set()
        for _ in range(2):
            st, body = http(self.tappd, "/prpc/Tappd.DeriveKey",
                            json.dumps({"path": "svc", "subject": "svc", "random_seed": True}))
            self.assertEqual(st, 200, body)
            k = serialization.load_pem_private_key(json.loads(body)["key"].encode(), None)
            keys.add(spki_der(k.public_key()))
        keys.add(spki_der(dkey.public_key()))
        self.assertEqual(len(keys), 3)

    def verifier(self):
        """The stack's pml-verifier (trusting the simulated TEE, with its collateral)."""
        if "verifier" not in self.stack.services:
            svc = self.stack.start("verifier", extra_args=[
                "--collateral-cache-dir", os.path.join(self.stack.dir, "verifier-cache"),
                "--offline", "--state-dir", os.path.join(self.stack.dir, "verifier-state"),
                "--trust-simulated-tee"])
            with channel(self.stack, svc) as ch:
                call(ch, "RefreshCollateral", att.RefreshCollateralRequest(
                    import_collateral_json=simulated_collateral().encode()),
                     att.RefreshCollateralResponse)
        return self.stack.services["verifier"]

    def appraise(self, bundle, report_data, **policy_changes):
        self.verifier()
        policy = {"allow_any_os": True, "allowed_compose_hashes": [self.compose_hash.hex()],
                  "allowed_app_ids": [self.compose_hash[:20].hex()], "allow_simulated": True,
                  "allowed_image_variants": ["production", "development"],
                  "gpu": {"count": 2}}
        policy.update(policy_changes)
        with channel(self.stack, self.stack.services["verifier"], role="viewer") as ch:
            return call(ch, "Appraise", att.AppraiseRequest(
                evidence=bundle, report_data=report_data, inline_policy_json=json.dumps(policy),
                omit_token=True), att.AppraiseResponse)

    def check_bundle(self, bundle, rd):
        rd64 = rd.ljust(64, b"\0")
        self.assertTrue(bundle.simulated)
        self.assertEqual(bundle.tee_provider, evpb.TEE_PROVIDER_SIMULATOR)
        self.assertEqual(bundle.report_data, rd64)
        self.assertEqual(quote_report_data(bundle.tdx_quote), rd64)
        self.assertEqual(replay_log(bundle.event_log), quote_rtmr3(bundle.tdx_quote))
        self.assertEqual(bundle.app_info.compose_hash, self.compose_hash)
        self.assertEqual(bundle.app_info.app_id, self.compose_hash[:20])
        self.assertEqual(len(bundle.gpus), 2)
        nonce = hashlib.sha256(b"pml-gpu-nonce:" + rd64).digest()
        for i, g in enumerate(bundle.gpus):
            self.assertEqual(g.index, i)
            self.assertEqual(g.nonce, nonce, i)
            self.assertTrue(g.simulated)
            self.assertTrue(g.spdm_report and g.certificate_chain)
        self.assertNotEqual(bundle.gpus[0].uuid, bundle.gpus[1].uuid)

    def test_5_attest_bundle_binds_report_data_and_gpus_and_is_appraised(self):
        # Through the SDK: client.attest('abcd') (report data = the string's bytes).
        sdk_bundle = evpb.EvidenceBundle.FromString(
            bytes.fromhex(self.sdk_result()["attestation"]))
        self.check_bundle(sdk_bundle, b"abcd")
        # Raw HTTP with 64 random bytes.
        rd = os.urandom(64)
        st, body = http(self.dstack, "/Attest", json.dumps({"report_data": rd.hex()}))
        self.assertEqual(st, 200, body)
        r = json.loads(body)
        self.assertTrue(r["simulated"])
        self.assertEqual(r["gpus"], 2)
        bundle = evpb.EvidenceBundle.FromString(bytes.fromhex(r["attestation"]))
        self.check_bundle(bundle, rd)
        self.assertNotEqual(bundle.gpus[0].nonce, sdk_bundle.gpus[0].nonce)
        st, body = http(self.dstack, "/Attest",
                        json.dumps({"report_data": rd.hex(), "skip_gpu_evidence": True}))
        self.assertEqual(st, 200, body)
        self.assertEqual(len(evpb.EvidenceBundle.FromString(
            bytes.fromhex(json.loads(body)["attestation"])).gpus), 0)
        st, body = http(self.dstack, "/Attest", json.dumps({"report_data": "00" * 65}))
        self.assertEqual(st, 400, body)

        rc, res = self.pmlctl_verify(bundle.tdx_quote, "--trust-simulated-tee")
        self.assertEqual(rc, 0, res)
        self.assertEqual(res["td_report"]["report_data"], rd.hex())

        a = self.appraise(bundle, rd)
        self.assertTrue(a.allowed, [(c.check, c.detail) for c in a.failed_checks])
        self.assertTrue(a.simulated)
        self.assertEqual([d.submodule for d in a.devices], ["cpu0", "gpu0", "gpu1"])
        self.assertTrue(all(d.passed for d in a.devices))
        self.assertEqual(a.app_info.compose_hash, self.compose_hash)
        a = self.appraise(sdk_bundle, b"abcd".ljust(64, b"\0"))
        self.assertTrue(a.allowed, [(c.check, c.detail) for c in a.failed_checks])
        # Refusals: other report data; simulated evidence not allowed; a GPU report taken for
        # other report data (the SDK bundle's) swapped in.
        other = bytearray(rd)
        other[0] ^= 1
        swapped = evpb.EvidenceBundle()
        swapped.CopyFrom(bundle)
        swapped.gpus[1].CopyFrom(sdk_bundle.gpus[1])
        for name, refused, check in (
                ("other report data", self.appraise(bundle, bytes(other)),
                 att.APPRAISAL_CHECK_REPORT_DATA_BINDING),
                ("simulated not allowed", self.appraise(bundle, rd, allow_simulated=False),
                 att.APPRAISAL_CHECK_POLICY_SIMULATED),
                ("other compose hash", self.appraise(
                    bundle, rd, allowed_compose_hashes=[hashlib.sha256(b"x").hexdigest()]),
                 att.APPRAISAL_CHECK_POLICY_COMPOSE_HASH),
                ("3 GPUs required", self.appraise(bundle, rd, gpu={"count": 3}),
                 att.APPRAISAL_CHECK_POLICY_GPU_COUNT),
                ("GPU report for other report data", self.appraise(swapped, rd),
                 att.APPRAISAL_CHECK_GPU_NONCE_BINDING)):
            self.assertFalse(refused.allowed, name)
            self.assertIn(check, [c.check for c in refused.failed_checks],
                          (name, [(c.check, c.detail) for c in refused.failed_checks]))

    def test_6_grpc_on_the_unix_socket_serves_every_method(self):
        with grpc.insecure_channel("unix:" + self.grpc_sock) as ch:
            q = guest_call(ch, "GetQuote", gpb.GetQuoteRequest(report_data=b"xyz"),
                           gpb.GetQuoteResponse)
            self.assertEqual(q.report_data, b"xyz" + bytes(61))
            self.assertEqual(quote_report_data(q.quote), b"xyz" + bytes(61))
            self.assertTrue(q.simulated)
            self.assertEqual(replay_log(q.event_log), quote_rtmr3(q.quote))
            with self.assertRaises(grpc.RpcError) as e:
                guest_call(ch, "GetQuote", gpb.GetQuoteRequest(report_data=bytes(65)),
                           gpb.GetQuoteResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

            k1, k2, k3 = (guest_call(ch, "GetKey", gpb.GetKeyRequest(path=p, purpose="signing"),
                                     gpb.GetKeyResponse) for p in ("wallet/eth", "wallet/eth",
                                                                   "wallet/other"))
            self.assertEqual(k1.key, k2.key)
            self.assertNotEqual(k1.key, k3.key)
            self.assertEqual(len(k1.key), 32)
            self.assertEqual(len(k1.signature_chain), 2)
            self.assertEqual(k1.algorithm, gpb.KEY_ALGORITHM_SECP256K1)
            # The same key as the dstack socket's /GetKey (the SDK's), and public_key matches it.
            self.assertEqual(k1.key.hex(), self.sdk_result()["key_wallet_eth"])
            pub = ec.derive_private_key(int.from_bytes(k1.key, "big"), ec.SECP256K1()).public_key()
            self.assertEqual(k1.public_key, pub.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint))

            info = guest_call(ch, "GetInfo", gpb.GetInfoRequest(), gpb.GetInfoResponse)
            self.assertEqual(info.app_info.app_id, self.compose_hash[:20])
            self.assertEqual(info.app_info.compose_hash, self.compose_hash)
            self.assertEqual(info.app_info.app_name, "sdk-test")
            self.assertEqual(info.key_provider, gpb.KEY_PROVIDER_KIND_LOCAL_DEV)
            self.assertEqual(info.tee_provider, evpb.TEE_PROVIDER_SIMULATOR)
            self.assertTrue(info.simulated)
            self.assertEqual(len(info.gpus), 2)
            self.assertTrue(all(g.verified for g in info.gpus), info.gpus)
            self.assertEqual(json.loads(info.tcb_info)["compose_hash"], self.compose_hash.hex())
            with open(self.compose) as f:
                self.assertEqual(info.app_compose, f.read())

            ev = guest_call(ch, "EmitEvent", gpb.EmitEventRequest(event="grpc-test",
                                                                  payload=b"\x01\x02"),
                            gpb.EmitEventResponse)
            self.assertEqual(ev.digest, hashlib.sha384(
                (0x08000001).to_bytes(4, "little") + b":grpc-test:" + b"\x01\x02").digest())
            q2 = guest_call(ch, "GetQuote", gpb.GetQuoteRequest(), gpb.GetQuoteResponse)
            self.assertEqual(ev.rtmr3.hex(), quote_rtmr3(q2.quote))
            runtime = [e for e in json.loads(q2.event_log) if e["imr"] == 3]
            self.assertLess(ev.index, len(runtime))
            self.assertEqual(runtime[ev.index]["event"], "grpc-test")
            self.assertEqual(runtime[ev.index]["digest"], ev.digest.hex())
            with self.assertRaises(grpc.RpcError) as e:
                guest_call(ch, "EmitEvent", gpb.EmitEventRequest(event="system-ready"),
                           gpb.EmitEventResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

            sig = guest_call(ch, "Sign", gpb.SignRequest(algorithm=gpb.KEY_ALGORITHM_ED25519,
                                                          data=b"message"), gpb.SignResponse)
            self.assertEqual(len(sig.signature), 64)
            ed25519.Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature,
                                                                              b"message")
            # Sign uses the app's signing key: GetKey(path "vms", purpose "signing").
            vms = guest_call(ch, "GetKey", gpb.GetKeyRequest(
                path="vms", purpose="signing", algorithm=gpb.KEY_ALGORITHM_ED25519),
                gpb.GetKeyResponse)
            self.assertEqual(sig.public_key, vms.public_key)
            self.assertEqual(sig.signature_chain[0], sig.signature)
            for data, want in ((b"message", True), (b"messagf", False)):
                v = guest_call(ch, "Verify", gpb.VerifyRequest(
                    algorithm=gpb.KEY_ALGORITHM_ED25519, data=data, signature=sig.signature,
                    public_key=sig.public_key), gpb.VerifyResponse)
                self.assertEqual(v.valid, want, data)
            tls = guest_call(ch, "GetTlsKey", gpb.GetTlsKeyRequest(
                subject="grpc.example", alt_names=["grpc.example", "127.0.0.1"],
                usage_ra_tls=True), gpb.GetTlsKeyResponse)
            leaf = x509.load_pem_x509_certificate(tls.certificate_chain[0].encode())
            self.assertEqual(quote_report_data(ext_bytes(leaf, OID_QUOTE)),
                             hashlib.sha512(b"ratls-cert:" + spki_der(leaf.public_key())).digest())
            ver = guest_call(ch, "GetVersion", gpb.GetVersionRequest(), gpb.GetVersionResponse)
            self.assertTrue(ver.version)

    def test_7_tcp_mtls_serves_read_only_methods_and_denies_key_material(self):
        svc = self.stack.services["guest-agent"]
        denied = [("GetKey", gpb.GetKeyRequest(path="wallet/eth"), gpb.GetKeyResponse),
                  ("GetTlsKey", gpb.GetTlsKeyRequest(subject="x"), gpb.GetTlsKeyResponse),
                  ("EmitEvent", gpb.EmitEventRequest(event="tcp"), gpb.EmitEventResponse),
                  ("Sign", gpb.SignRequest(algorithm=gpb.KEY_ALGORITHM_ED25519, data=b"m"),
                   gpb.SignResponse)]
        _, log_before = self.quote()
        for role in ("viewer", "operator"):
            with channel(self.stack, svc, role=role) as ch:
                q = guest_call(ch, "GetQuote", gpb.GetQuoteRequest(report_data=b"tcp"),
                               gpb.GetQuoteResponse)
                self.assertEqual(quote_report_data(q.quote), b"tcp" + bytes(61))
                info = guest_call(ch, "GetInfo", gpb.GetInfoRequest(), gpb.GetInfoResponse)
                self.assertEqual(info.app_info.compose_hash, self.compose_hash)
                rd = os.urandom(64)
                bundle = guest_call(ch, "Attest", gpb.AttestRequest(report_data=rd),
                                    gpb.AttestResponse).evidence
                self.check_bundle(bundle, rd)
                self.assertTrue(guest_call(ch, "GetVersion", gpb.GetVersionRequest(),
                                           gpb.GetVersionResponse).version)
                k = ed25519.Ed25519PrivateKey.generate()
                v = guest_call(ch, "Verify", gpb.VerifyRequest(
                    algorithm=gpb.KEY_ALGORITHM_ED25519, data=b"tcp", signature=k.sign(b"tcp"),
                    public_key=k.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw)),
                    gpb.VerifyResponse)
                self.assertTrue(v.valid)
                for method, req, resp in denied:
                    with self.assertRaises(grpc.RpcError, msg=(role, method)) as e:
                        guest_call(ch, method, req, resp)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                                     (role, method))
        _, log_after = self.quote()
        self.assertEqual(log_after, log_before, "a denied EmitEvent changed the log")

    def test_8_sdk_over_tcp_serves_quotes_and_refuses_key_material(self):
        endpoint = f"http://127.0.0.1:{self.http_port}"
        rd = os.urandom(64)
        _, log_before = self.quote()
        r = subprocess.run(["node", "-e", SDK_TCP_JS], cwd=NODE_DIR, capture_output=True,
                           text=True, timeout=120,
                           env={**os.environ, "ENDPOINT": endpoint, "REPORT_DATA": rd.hex()})
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, r.stdout + r.stderr)
        out = json.loads(lines[-1])
        self.assertNotIn("fatal", out, out.get("fatal"))
        # getQuote: the fresh report data, a log that replays, a quote pmlctl verifies.
        quote = bytes.fromhex(out["quote"])
        self.assertEqual(quote_report_data(quote), rd)
        self.assertEqual(out["replayed"][3], quote_rtmr3(quote))
        self.assertEqual(replay_log(out["event_log"]), quote_rtmr3(quote))
        rc, res = self.pmlctl_verify(quote, "--trust-simulated-tee")
        self.assertEqual(rc, 0, res)
        self.assertTrue(res["verified"], res)
        self.assertEqual(res["td_report"]["report_data"], rd.hex())
        # info(): the app's identity, parsed by the SDK.
        self.assertEqual(out["info"]["compose_hash"], self.compose_hash.hex())
        self.assertEqual(out["info"]["app_id"], self.compose_hash[:20].hex())
        self.assertEqual(out["info"]["tcb_info"]["compose_hash"], self.compose_hash.hex())
        self.assertTrue(out["version"]["version"])
        # Key material and RTMR3 writes stay on the unix socket. The SDK throws on getKey (no key
        # in the answer) and hands back getTlsKey's error object; emitEvent and sign ignore the
        # answer, so the raw calls below and the unchanged log are what show those refused.
        self.assertFalse(out["get_key"]["ok"], out["get_key"])
        tls = out["get_tls_key"]
        if tls["ok"]:
            self.assertIn("not served on the TCP listener", tls["value"].get("error", ""), tls)
            self.assertNotIn("key", tls["value"])
            self.assertNotIn("certificate_chain", tls["value"])
        for name in ("emit_event", "sign"):
            self.assertNotIn("signature", json.dumps(out[name].get("value")), name)
        refused = {"/GetKey": {"path": "wallet/eth"}, "/GetTlsKey": {"subject": "x"},
                   "/EmitEvent": {"event": "tcp", "payload": "00"},
                   "/Sign": {"algorithm": "ed25519", "data": "00"},
                   "/Verify": {}, "/prpc/Tappd.DeriveKey": {"path": "svc"},
                   "/prpc/Tappd.RawQuote": {}, "/getkey": {}, "/GetQuote/../GetKey": {}}
        for path, body in refused.items():
            st, payload = tcp_http(self.http_port, path, json.dumps(body))
            self.assertEqual(st, 403, (path, payload))
            err = json.loads(payload)["error"]
            self.assertIn("not served on the TCP listener: key material never leaves the guest; "
                          "use the unix socket", err, path)
            self.assertEqual(set(json.loads(payload)), {"error"}, path)
        for path, body in {"/Info": {}, "/Version": {}, "/Attest": {"report_data": rd.hex()},
                           "/prpc/Tappd.TdxQuote": {"report_data": "00"},
                           "/prpc/Tappd.Info": {}}.items():
            st, payload = tcp_http(self.http_port, path, json.dumps(body))
            self.assertEqual(st, 200, (path, payload))
        # The refused EmitEvents changed nothing: only the quotes' own reads happened.
        _, log_after = self.quote()
        self.assertEqual(log_after, log_before, "an EmitEvent over TCP reached the log")
        # The unix socket still serves keys.
        st, body = http(self.dstack, "/GetKey", json.dumps({"path": "wallet/eth"}))
        self.assertEqual(st, 200, body)

    def tls_key(self, *args):
        return subprocess.run([harness.binary(harness.SERVICES["guest-agent"][0]), "tls-key",
                               *args], capture_output=True, text=True, timeout=60)

    def test_9_tls_key_subcommand_writes_a_chain_openssl_verifies(self):
        d = tempfile.mkdtemp(dir=self.stack.dir)
        key_out, cert_out = os.path.join(d, "key.pem"), os.path.join(d, "chain.pem")
        r = self.tls_key("--dstack-socket", self.dstack, "--subject", "demo.local",
                         "--alt-name", "demo.local", "--alt-name", "127.0.0.1", "--ra-tls",
                         "--key-out", key_out, "--cert-out", cert_out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout + r.stderr, "")
        self.assertEqual(os.stat(key_out).st_mode & 0o777, 0o600)
        with open(cert_out) as f:
            chain_pem = f.read()
        certs = pem_certificates(chain_pem.encode())
        self.assertEqual(len(certs), 3)
        leaf, appca, root = certs
        # `openssl verify`: the leaf chains to the root through the app CA, leaf first in the file.
        files = {}
        for name, c in (("appca", appca), ("root", root)):
            files[name] = os.path.join(d, name + ".pem")
            with open(files[name], "wb") as f:
                f.write(c.public_bytes(serialization.Encoding.PEM))
        r = subprocess.run(["openssl", "verify", "-CAfile", files["root"], "-untrusted",
                            files["appca"], cert_out], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), f"{cert_out}: OK")
        with open(key_out, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        self.assertEqual(spki_der(key.public_key()), spki_der(leaf.public_key()))
        self.assertEqual(leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         "demo.local")
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["demo.local"])
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)], ["127.0.0.1"])
        # --ra-tls: the quote in the leaf binds its key, and its log replays.
        quote = ext_bytes(leaf, OID_QUOTE)
        self.assertEqual(quote_report_data(quote),
                         hashlib.sha512(b"ratls-cert:" + spki_der(leaf.public_key())).digest())
        self.assertEqual(replay_log(ext_bytes(leaf, OID_EVENT_LOG).decode()), quote_rtmr3(quote))
        self.assertEqual(ext_bytes(leaf, OID_APP_ID), self.compose_hash[:20])
        rc, res = self.pmlctl_verify(quote, "--trust-simulated-tee")
        self.assertEqual(rc, 0, res)

        # Without --ra-tls: a fresh key, same app CA, no quote.
        r = self.tls_key("--dstack-socket", self.dstack, "--subject", "plain.local",
                         "--key-out", key_out, "--cert-out", cert_out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(cert_out, "rb") as f:
            plain = pem_certificates(f.read())
        self.assertEqual(plain[1], appca)
        self.assertNotEqual(spki_der(plain[0].public_key()), spki_der(leaf.public_key()))
        with self.assertRaises(x509.ExtensionNotFound):
            plain[0].extensions.get_extension_for_oid(OID_QUOTE)

        # Errors: one line, exit 1, nothing written.
        for args, needle in (
                (["--dstack-socket", os.path.join(d, "missing.sock"), "--subject", "x"],
                 "missing.sock"),
                (["--dstack-socket", self.dstack, "--subject", "x", "--alt-name", "a b"],
                 "alt_names")):
            out_key = os.path.join(d, "never.key")
            r = self.tls_key(*args, "--key-out", out_key, "--cert-out", os.path.join(d, "n.pem"))
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertEqual(r.stdout, "")
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("pml-guest-agent tls-key: error: "), r.stderr)
            self.assertIn(needle, r.stderr)
            self.assertFalse(os.path.exists(out_key))
        r = self.tls_key("--dstack-socket", self.dstack, "--key-out", key_out)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--subject", r.stdout + r.stderr)

    def start_kms(self):
        if "kms" in self.stack.services:
            return self.stack.services["kms"], self.kms_guest_port
        verifier = self.verifier()
        pki = self.stack.pki
        type(self).kms_guest_port = harness.free_port()
        kms = self.stack.start("kms", extra_args=[
            "--state-dir", os.path.join(self.stack.dir, "kms-state"),
            "--guest-listen", f"127.0.0.1:{self.kms_guest_port}",
            "--verifier", verifier.addr, "--verifier-cert", os.path.join(pki, "kms.pem"),
            "--verifier-key", os.path.join(pki, "kms.key")])
        return kms, self.kms_guest_port

    def boot_kms_agent(self, name, compose_text, kms_port):
        """Boots an agent from a config dir as the VMM writes it: app-compose.json and
        .sys-config.json (kms_urls as https:// URLs), no kms-root-ca.pem. Returns (proc or None
        when it exited, its log, its dir)."""
        d = os.path.join(self.stack.dir, "kms-agent-" + name)
        os.makedirs(os.path.join(d, "config"))
        with open(os.path.join(d, "config", "app-compose.json"), "w") as f:
            f.write(compose_text)
        with open(os.path.join(d, "config", ".sys-config.json"), "w") as f:
            json.dump({"kms_urls": [f"https://127.0.0.1:{kms_port}"],
                       "vm_config": json.dumps({"cpu_count": 1})}, f)
        ready, log_path = os.path.join(d, "ready.json"), os.path.join(d, "agent.log")
        args = [harness.binary(harness.SERVICES["guest-agent"][0]), "--grpc-socket",
                os.path.join(d, "guest.sock"), "--metrics-listen", "", "--ready-file", ready,
                "boot", "--tee", "simulated", "--state-dir", os.path.join(d, "state"),
                "--config-dir", os.path.join(d, "config"), "--dstack-socket",
                os.path.join(d, "dstack.sock")]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        harness.wait_for(lambda: proc.poll() is not None or os.path.exists(ready), 90,
                         f"agent {name} to boot or exit")
        with open(log_path) as f:
            text = f.read()
        if proc.poll() is not None:
            return None, text, d
        self.addCleanup(lambda: (proc.send_signal(signal.SIGTERM), proc.wait(timeout=20)))
        return proc, text, d

    def test_9b_kms_root_ca_is_fetched_from_the_kms_and_checked_against_the_pin(self):
        kms, kms_port = self.start_kms()
        with channel(self.stack, kms) as ch:
            info = ch.unary_unary("/pml.kms.v1.KmsAdmin/GetKmsInfo",
                                  request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=kpb.GetKmsInfoResponse.FromString)(
                kpb.GetKmsInfoRequest(), timeout=30)
        kp_id = info.key_provider_id
        # The id is the identity CA's SPKI (what the agent checks the fetched certificate against).
        identity = x509.load_der_x509_certificate(info.identity_ca_cert)
        self.assertEqual(spki_der(identity.public_key()).hex(), kp_id)

        def compose(name, pin):
            text = json.dumps({"name": name, "runner": "bash", "bash_script": "true",
                               "key_provider": "kms", "key_provider_id": pin},
                              sort_keys=True, separators=(",", ":"))
            h = hashlib.sha256(text.encode()).hexdigest()
            return text, h, h[:40]

        def admin(method, req, resp_type):
            with channel(self.stack, kms) as ch:
                return ch.unary_unary("/pml.kms.v1.KmsAdmin/" + method,
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_type.FromString)(req, timeout=30)

        text, ch_hash, app_id = compose("fetched-ca-app", kp_id)
        policy = {"allow_any_os": True, "allowed_compose_hashes": [ch_hash],
                  "allowed_app_ids": [app_id], "allow_simulated": True, "require_event_log": True,
                  "allowed_image_variants": ["production", "development"]}
        admin("PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=kpb.AppPolicy(
            app_id=bytes.fromhex(app_id), inline_policy_json=json.dumps(policy))),
              kpb.PutAppPolicyResponse)
        proc, log, d = self.boot_kms_agent("fetched", text, kms_port)
        self.assertIsNotNone(proc, log[-3000:])
        self.assertIn("kms_root_ca source=fetch", log)
        with grpc.insecure_channel("unix:" + os.path.join(d, "guest.sock")) as ch:
            gi = guest_call(ch, "GetInfo", gpb.GetInfoRequest(), gpb.GetInfoResponse)
            key = guest_call(ch, "GetKey", gpb.GetKeyRequest(path="wallet", purpose="p"),
                             gpb.GetKeyResponse)
        self.assertEqual(gi.key_provider, gpb.KEY_PROVIDER_KIND_KMS)
        self.assertEqual(json.loads(gi.app_info.key_provider_info), {"name": "kms", "id": kp_id})
        self.assertEqual(len(key.key), 32)
        released = admin("ListAuditEvents", kpb.ListAuditEventsRequest(
            app_id=bytes.fromhex(app_id), page_size=100), kpb.ListAuditEventsResponse).events
        self.assertEqual([e.outcome for e in released if e.action == kpb.AUDIT_ACTION_KEY_RELEASE],
                         [kpb.AUDIT_OUTCOME_ALLOWED])

        # A CVM pinning another KMS identity: the fetched CA is refused, naming both values, and
        # the KMS never sees its evidence (bound to a policy, so a request would be audited).
        other = spki_der(ec.generate_private_key(ec.SECP256R1()).public_key()).hex()
        text_o, ch_o, app_o = compose("other-pin-app", other)
        policy.update(allowed_compose_hashes=[ch_o], allowed_app_ids=[app_o])
        admin("PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=kpb.AppPolicy(
            app_id=bytes.fromhex(app_o), inline_policy_json=json.dumps(policy))),
              kpb.PutAppPolicyResponse)
        proc, log, _ = self.boot_kms_agent("other-pin", text_o, kms_port)
        self.assertIsNone(proc, "an agent pinning another KMS booted")
        self.assertIn(f"presents identity CA ...{kp_id[-64:]}", log)
        self.assertIn(f"key_provider_id pins ...{other[-64:]}", log)
        events = admin("ListAuditEvents", kpb.ListAuditEventsRequest(
            app_id=bytes.fromhex(app_o), page_size=100), kpb.ListAuditEventsResponse).events
        self.assertEqual([e for e in events if e.action == kpb.AUDIT_ACTION_KEY_RELEASE], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
