"""pml-kms end to end on loopback with the simulated TEE (issue 7): a real pml-verifier (mTLS, kms
role) appraises, a real pml-guest-agent boots with the KMS key provider, and Python clients
(python3-grpcio, python3-cryptography) check what the KMS releases with their own X25519 + HKDF +
AES-GCM, independently of the C++ code.

  - a simulated CVM gets its keys; the same app and instance get the same keys again (also after an
    agent restart); another app gets different keys;
  - refusals are FAILED_PRECONDITION naming the reason, and audited: a quote that does not commit to
    the ephemeral key, a replayed request with another ephemeral key, evidence failing the policy,
    an unknown app, simulated evidence under a policy that does not allow it;
  - SignCert issues an RA-TLS certificate that OpenSSL verifies to the epoch's root;
  - bad input on every RPC gets a clear error and the KMS keeps serving; no key material appears in
    any log line;
  - kill -9 during first start and during rotation, then restart: the keys of the surviving epochs
    are unchanged;
  - two KMS replicas on one PostgreSQL, the second joined through replication, derive identical
    keys; a replica whose evidence fails the replica policy gets nothing.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/kms_test.py
"""
import hashlib
import importlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from verifier_test import GEN, att, call, channel  # noqa: E402
from guest_agent_test import http, spki_der  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
subprocess.run(["protoc", f"-I{ROOT}/proto", "-I/usr/include", f"--python_out={GEN}",
                "pml/kms/v1/kms.proto", "pml/guest/v1/guest.proto"], check=True)
kpb = importlib.import_module("pml.kms.v1.kms_pb2")
gpb = importlib.import_module("pml.guest.v1.guest_pb2")
evpb = importlib.import_module("pml.common.v1.evidence_pb2")

ADMIN = "/pml.kms.v1.KmsAdmin/"
RELEASE = "/pml.kms.v1.KeyRelease/"
GUEST = "/pml.guest.v1.GuestAgent/"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rpc(ch, full, req, resp_type, timeout=60):
    return ch.unary_unary(full, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=resp_type.FromString)(req, timeout=timeout)


def kms_report_data(purpose_prefix, value):
    return hashlib.sha512(purpose_prefix + value).digest()


def open_sealed(private_key, sealed, aad, label):
    """lib/crypto/seal.h, independently: X25519, HKDF-SHA256, AES-256-GCM."""
    shared = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(
        sealed.kms_ephemeral_public_key))
    me = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    info = (b"pml-seal:v1" + len(label).to_bytes(4, "big") + label
            + sealed.kms_ephemeral_public_key + me)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pml-seal:v1", info=info).derive(shared)
    return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Kms:
    """A pml-kms process (through the harness) with its guest-facing port."""

    def __init__(self, stack, name, state, verifier, extra=()):
        self.guest_port = free_port()
        self.state = state
        self.name = name
        pki = stack.pki
        self.args = ["--state-dir", state, "--node-name", name,
                     "--guest-listen", f"127.0.0.1:{self.guest_port}",
                     "--verifier", verifier.addr,
                     "--verifier-cert", os.path.join(pki, "kms.pem"),
                     "--verifier-key", os.path.join(pki, "kms.key"), *extra]
        self.stack = stack
        ready = os.path.join(stack.dir, f"{name}.ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.svc = stack.start(name, extra_args=self.args)

    @property
    def guest_addr(self):
        return f"127.0.0.1:{self.guest_port}"

    def root_ca(self):
        return os.path.join(self.state, "kms-root-ca.pem")

    def guest_channel(self):
        with open(self.root_ca(), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(self.guest_addr, creds)

    def admin(self, role="operator"):
        return channel(self.stack, self.svc, role)


class KmsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        d = cls.stack.dir
        # kms_test starts several KMS nodes: each gets its own harness name.
        for n in ("kms-b", "kms-c", "kms-crash"):
            harness.SERVICES[n] = harness.SERVICES["kms"]
        cls.verifier = cls.stack.start("verifier", extra_args=[
            "--state-dir", os.path.join(d, "verifier"), "--offline", "--trust-simulated-tee",
            "--collateral-cache-dir", os.path.join(d, "cache")])
        collateral = os.path.join(d, "simulated-collateral.json")
        harness.pmlctl("dev", "simulated-collateral", "--out", collateral)
        with open(collateral, "rb") as f, channel(cls.stack, cls.verifier) as ch:
            call(ch, "RefreshCollateral",
                 att.RefreshCollateralRequest(import_collateral_json=f.read()),
                 att.RefreshCollateralResponse)
        cls.join_token = os.path.join(d, "join-token")
        write(cls.join_token, "operator-join-token-0123456789\n")
        cls.kms = Kms(cls.stack, "kms", os.path.join(d, "kms-a"), cls.verifier,
                      ["--replica-policy-id", "kms-replica",
                       "--replica-join-token-file", cls.join_token])
        with cls.kms.admin() as ch:
            info = rpc(ch, ADMIN + "GetKmsInfo", kpb.GetKmsInfoRequest(), kpb.GetKmsInfoResponse)
        cls.key_provider_id = info.key_provider_id
        cls.put_verifier_policy("kms-replica", cls.replica_policy(True))
        cls.agents = {}

    @classmethod
    def tearDownClass(cls):
        for a in list(cls.agents.values()):
            a["proc"].send_signal(signal.SIGTERM)
            a["proc"].wait(timeout=20)
        codes = cls.stack.close()
        assert all(c == 0 for c in codes.values()), codes

    @staticmethod
    def replica_policy(simulated):
        return {"allow_any_os": True, "allow_any_app": True, "allow_simulated": simulated,
                "require_event_log": False,
                "allowed_image_variants": ["production", "development"]}

    @classmethod
    def put_verifier_policy(cls, pid, policy):
        with channel(cls.stack, cls.verifier) as ch:
            call(ch, "PutPolicy", att.PutPolicyRequest(id=pid, policy_json=json.dumps(policy)),
                 att.PutPolicyResponse)

    def bind_app(self, app_id_hex, verifier_policy=None, inline=None):
        p = kpb.AppPolicy(app_id=bytes.fromhex(app_id_hex))
        if inline is not None:
            p.inline_policy_json = json.dumps(inline)
        else:
            p.verifier_policy_id = verifier_policy
        with self.kms.admin() as ch:
            return rpc(ch, ADMIN + "PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=p),
                       kpb.PutAppPolicyResponse).app_policy

    def compose(self, name, key_provider_id=None):
        doc = {"name": name, "runner": "bash", "bash_script": "true", "kms_enabled": True,
               "key_provider": "kms",
               "key_provider_id": key_provider_id or self.key_provider_id}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        h = hashlib.sha256(text.encode()).hexdigest()
        return text, h, h[:40]

    def app_policy(self, compose_hash, app_id, simulated=True):
        return {"allow_any_os": True, "allowed_compose_hashes": [compose_hash],
                "allowed_app_ids": [app_id], "allow_simulated": simulated,
                "require_event_log": True,
                "allowed_image_variants": ["production", "development"]}

    def boot_agent(self, name, compose_text, boot=True, expect_ok=True):
        d = os.path.join(self.stack.dir, "agent-" + name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "app-compose.json")
        write(path, compose_text)
        sock = os.path.join(d, "dstack.sock")
        grpc_sock = os.path.join(d, "guest.sock")
        ready = os.path.join(d, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        args = [harness.binary("services/guest-agent/pml-guest-agent"), "--grpc-socket",
                grpc_sock, "--metrics-listen", "", "--ready-file", ready]
        if boot:
            args.append("boot")
        args += ["--tee", "simulated", "--state-dir", os.path.join(d, "state"),
                 "--app-compose", path, "--key-provider", "kms", "--kms-url",
                 self.kms.guest_addr, "--kms-root-ca", self.kms.root_ca(),
                 "--dstack-socket", sock]
        with open(os.path.join(d, "agent.log"), "a") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        if expect_ok:
            if proc.poll() is not None:
                with open(os.path.join(d, "agent.log")) as f:
                    self.fail(f.read()[-3000:])
            agent = {"proc": proc, "dir": d, "sock": sock, "grpc": grpc_sock}
            self.agents[name] = agent
            return agent
        proc.wait(timeout=30)
        self.assertNotEqual(proc.returncode, 0)
        with open(os.path.join(d, "agent.log")) as f:
            return f.read()

    def stop_agent(self, name):
        a = self.agents.pop(name)
        a["proc"].send_signal(signal.SIGTERM)
        self.assertEqual(a["proc"].wait(timeout=20), 0)

    def agent_key(self, agent):
        st, body = http(agent["sock"], "/GetKey", json.dumps({"path": "wallet", "purpose": "p"}))
        self.assertEqual(st, 200, body)
        return json.loads(body)["key"]

    def quote_from(self, agent, report_data):
        st, body = http(agent["sock"], "/Attest",
                        json.dumps({"report_data": report_data.hex(), "skip_gpu_evidence": True}))
        self.assertEqual(st, 200, body)
        return evpb.EvidenceBundle.FromString(bytes.fromhex(json.loads(body)["attestation"]))

    def get_app_keys(self, agent, eph=None, bind_to=None):
        """GetAppKeys as a client in the CVM would make it, returning (status, keys, response)."""
        eph = eph or x25519.X25519PrivateKey.generate()
        pub = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        bound = bind_to if bind_to is not None else pub
        bundle = self.quote_from(agent, kms_report_data(b"pml-kms-key-release:", bound))
        with self.kms.guest_channel() as ch:
            resp = rpc(ch, RELEASE + "GetAppKeys",
                       kpb.GetAppKeysRequest(evidence=bundle, ephemeral_public_key=pub),
                       kpb.GetAppKeysResponse)
        plain = open_sealed(eph, resp.sealed_keys, resp.app_id, b"pml-kms-app-keys:v1")
        return kpb.AppKeys.FromString(plain), resp

    def audit(self, **filters):
        with self.kms.admin() as ch:
            return list(rpc(ch, ADMIN + "ListAuditEvents", kpb.ListAuditEventsRequest(
                page_size=1000, **filters), kpb.ListAuditEventsResponse).events)

    # ---- tests ----

    def test_1_a_simulated_cvm_gets_stable_keys_another_app_different_ones(self):
        text, ch_hash, app = self.compose("kms-app-a")
        self.put_verifier_policy("app-a", self.app_policy(ch_hash, app))
        self.bind_app(app, "app-a")
        agent = self.boot_agent("a", text)
        with grpc.insecure_channel("unix:" + agent["grpc"]) as ch:
            info = rpc(ch, GUEST + "GetInfo", gpb.GetInfoRequest(), gpb.GetInfoResponse)
        self.assertEqual(info.key_provider, gpb.KEY_PROVIDER_KIND_KMS)
        self.assertEqual(json.loads(info.app_info.key_provider_info),
                         {"name": "kms", "id": self.key_provider_id})
        key1 = self.agent_key(agent)
        # The key-provider event in RTMR3 names the KMS root.
        st, body = http(agent["sock"], "/GetQuote", json.dumps({"report_data": "00"}))
        events = {e["event"]: e for e in json.loads(json.loads(body)["event_log"])}
        self.assertIn(self.key_provider_id, bytes.fromhex(
            events["key-provider"]["event_payload"]).decode())
        # Restart without `boot`: the keys come from the KMS again, the same.
        self.stop_agent("a")
        agent = self.boot_agent("a", text, boot=False)
        self.assertEqual(self.agent_key(agent), key1)
        # Released keys, opened here: same app and instance -> same keys; sealed to each request.
        k1, r1 = self.get_app_keys(agent)
        k2, r2 = self.get_app_keys(agent)
        self.assertEqual(k1.k256_key, k2.k256_key)
        self.assertEqual(k1.disk_crypt_key, k2.disk_crypt_key)
        self.assertEqual(k1.env_crypt_key, k2.env_crypt_key)
        self.assertNotEqual(r1.sealed_keys.ciphertext, r2.sealed_keys.ciphertext)
        self.assertEqual(len(k1.k256_key), 32)
        self.assertEqual(r1.attestation_token.count("."), 2, r1.attestation_token[:80])
        # The app key chains to the KMS: its k256 signature recovers to the epoch root key (checked
        # through the guest agent's /Verify-free path: the app CA certificate chains to the root).
        app_ca = x509.load_der_x509_certificate(k1.app_ca_cert)
        root = x509.load_der_x509_certificate(k1.kms_root_ca_cert)
        root.public_key().verify(app_ca.signature, app_ca.tbs_certificate_bytes,
                                 ec.ECDSA(app_ca.signature_hash_algorithm))
        # Another app gets different keys.
        text_b, hash_b, app_b = self.compose("kms-app-b")
        self.put_verifier_policy("app-b", self.app_policy(hash_b, app_b))
        self.bind_app(app_b, "app-b")
        agent_b = self.boot_agent("b", text_b)
        kb, _ = self.get_app_keys(agent_b)
        self.assertNotEqual(kb.k256_key, k1.k256_key)
        self.assertNotEqual(kb.env_crypt_key, k1.env_crypt_key)
        self.assertNotEqual(self.agent_key(agent_b), key1)
        released = [e for e in self.audit(app_id=bytes.fromhex(app),
                                          action=kpb.AUDIT_ACTION_KEY_RELEASE)
                    if e.outcome == kpb.AUDIT_OUTCOME_ALLOWED]
        self.assertGreaterEqual(len(released), 4)
        for e in released:
            self.assertIn(e.verifier_status, ("affirming", "warning"), e)
            self.assertTrue(e.simulated, e)
            self.assertEqual(len(e.measurements.rtmr3), 48, e)
        # Every row this KMS wrote verifies in its node's MAC chain, from the first start's row on.
        everything = self.audit()
        self.assertTrue(everything)
        for e in everything:
            self.assertFalse(e.unauthenticated, e)
            self.assertEqual(e.node, self.kms.name, e)
        self.assertEqual([e.node_sequence for e in everything],
                         list(range(1, len(everything) + 1)))
        type(self).secrets = [k1.k256_key, k1.disk_crypt_key, k1.env_crypt_key, k1.app_ca_key,
                              kb.k256_key]

    def test_2_refusals_are_failed_precondition_and_audited(self):
        agent = self.agents.get("a")
        self.assertIsNotNone(agent, "test_1 boots agent a")
        text, ch_hash, app = self.compose("kms-app-a")

        def refused(fn, needle):
            with self.assertRaises(grpc.RpcError) as e:
                fn()
            self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION,
                             e.exception.details())
            self.assertIn(needle, e.exception.details())
            return e.exception.details()

        before = len(self.audit(outcome=kpb.AUDIT_OUTCOME_REFUSED))
        # A quote that does not commit to the ephemeral key.
        refused(lambda: self.get_app_keys(agent, bind_to=os.urandom(32)), "REPORT_DATA_BINDING")
        # A replayed request with a different ephemeral key.
        eph = x25519.X25519PrivateKey.generate()
        pub = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        bundle = self.quote_from(agent, kms_report_data(b"pml-kms-key-release:", pub))
        other = x25519.X25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

        def replay():
            with self.kms.guest_channel() as ch:
                rpc(ch, RELEASE + "GetAppKeys", kpb.GetAppKeysRequest(
                    evidence=bundle, ephemeral_public_key=other), kpb.GetAppKeysResponse)
        refused(replay, "REPORT_DATA_BINDING")
        # Evidence failing the policy: the app bound to a policy for another compose hash.
        self.put_verifier_policy("app-a-other", self.app_policy("ab" * 32, app))
        self.bind_app(app, "app-a-other")
        refused(lambda: self.get_app_keys(agent), "COMPOSE")
        # Simulated evidence under a policy that does not allow it.
        self.bind_app(app, inline=self.app_policy(ch_hash, app, simulated=False))
        refused(lambda: self.get_app_keys(agent), "SIMULATED")
        self.bind_app(app, "app-a")
        # An unknown app: a CVM whose app has no binding cannot even boot.
        text_u, _, app_u = self.compose("kms-app-unknown")
        log = self.boot_agent("unknown", text_u, expect_ok=False)
        self.assertIn("unknown app", log)
        # A CVM pinning another KMS root refuses to talk to this one.
        text_p, _, _ = self.compose("kms-app-pin", key_provider_id="30" * 91)
        log = self.boot_agent("pin", text_p, expect_ok=False)
        self.assertIn("key_provider_id", log)
        # An app's own RA-TLS certificate (chained to its app CA, under the epoch root) cannot pose
        # as the KMS: the guest anchors TLS at the identity CA it pins, which signs only KMS nodes.
        st, body = http(agent["sock"], "/GetTlsKey", json.dumps(
            {"subject": "127.0.0.1", "alt_names": ["127.0.0.1", "localhost"],
             "usage_server_auth": True}))
        self.assertEqual(st, 200, body)
        tls = json.loads(body)
        fake = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
        fake_port = fake.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(tls["key"].encode(), "".join(tls["certificate_chain"]).encode())]))
        fake.start()
        try:
            text_f, hash_f, app_f = self.compose("kms-app-fake")
            d = os.path.join(self.stack.dir, "agent-fake")
            os.makedirs(d, exist_ok=True)
            write(os.path.join(d, "app-compose.json"), text_f)
            r = subprocess.run(
                [harness.binary("services/guest-agent/pml-guest-agent"), "--grpc-socket",
                 os.path.join(d, "g.sock"), "--metrics-listen", "", "boot", "--tee", "simulated",
                 "--state-dir", os.path.join(d, "state"), "--app-compose",
                 os.path.join(d, "app-compose.json"), "--key-provider", "kms", "--kms-url",
                 f"127.0.0.1:{fake_port}", "--kms-root-ca", self.kms.root_ca()],
                capture_output=True, text=True, timeout=120)
            self.assertNotEqual(r.returncode, 0)
            self.assertNotIn("Method not found", r.stderr + r.stdout)
            self.assertIn("KMS 127.0.0.1", r.stderr + r.stdout)
        finally:
            fake.stop(0)
        refusals = self.audit(outcome=kpb.AUDIT_OUTCOME_REFUSED)
        self.assertGreaterEqual(len(refusals) - before, 5)
        for e in refusals[before:]:
            self.assertTrue(e.reason, e)
        self.assertTrue(any(e.app_id == bytes.fromhex(app_u) and "unknown app" in e.reason
                            for e in refusals))

    def test_2b_releases_and_refusals_are_counted(self):
        # Runs after tests 1 and 2, which released keys and were refused.
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{self.kms.svc.metrics_port}/metrics", timeout=10).read().decode()
        def value(result):
            m = re.search(r'pml_kms_key_releases_total\{operation="get_app_keys",result="%s"\} (\d+)'
                          % result, body)
            self.assertIsNotNone(m, body[-2000:])
            return int(m.group(1))
        self.assertGreaterEqual(value("released"), 2)
        self.assertGreaterEqual(value("refused"), 3)

    def test_3_sign_cert_issues_an_ra_tls_certificate(self):
        agent = self.agents["a"]
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "app.internal")])).sign(key, hashes.SHA256())
        bundle = self.quote_from(agent, kms_report_data(b"ratls-cert:",
                                                        spki_der(key.public_key())))
        with self.kms.guest_channel() as ch:
            resp = rpc(ch, RELEASE + "SignCert", kpb.SignCertRequest(
                csr=csr.public_bytes(serialization.Encoding.DER), evidence=bundle),
                kpb.SignCertResponse)
        self.assertEqual(len(resp.certificate_chain), 3)
        d = tempfile.mkdtemp(dir=self.stack.dir)
        names = ["leaf.pem", "ca.pem", "root.pem"]
        for n, der in zip(names, resp.certificate_chain):
            write(os.path.join(d, n), x509.load_der_x509_certificate(der).public_bytes(
                serialization.Encoding.PEM).decode())
        r = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "root.pem"),
                            "-untrusted", os.path.join(d, "ca.pem"), os.path.join(d, "leaf.pem")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        leaf = x509.load_der_x509_certificate(resp.certificate_chain[0])
        self.assertEqual(spki_der(leaf.public_key()), spki_der(key.public_key()))
        # Evidence for another key is refused.
        other = ec.generate_private_key(ec.SECP256R1())
        bad = self.quote_from(agent, kms_report_data(b"ratls-cert:", spki_der(other.public_key())))
        with self.kms.guest_channel() as ch, self.assertRaises(grpc.RpcError) as e:
            rpc(ch, RELEASE + "SignCert", kpb.SignCertRequest(
                csr=csr.public_bytes(serialization.Encoding.DER), evidence=bad),
                kpb.SignCertResponse)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_4_bad_input_on_every_rpc(self):
        garbage = evpb.EvidenceBundle(tdx_quote=os.urandom(2000),
                                      app_info=evpb.AppInfo(app_id=b"x" * 20))
        cases = [
            (RELEASE + "GetAppKeys", kpb.GetAppKeysRequest(), kpb.GetAppKeysResponse),
            (RELEASE + "GetAppKeys", kpb.GetAppKeysRequest(evidence=garbage,
                                                           ephemeral_public_key=b"k" * 31),
             kpb.GetAppKeysResponse),
            (RELEASE + "GetAppKeys", kpb.GetAppKeysRequest(
                evidence=evpb.EvidenceBundle(tdx_quote=os.urandom(10 << 20)),
                ephemeral_public_key=b"k" * 32), kpb.GetAppKeysResponse),
            (RELEASE + "SignCert", kpb.SignCertRequest(csr=b"not a csr", evidence=garbage),
             kpb.SignCertResponse),
            (RELEASE + "GetAppEnvEncryptPubKey", kpb.GetAppEnvEncryptPubKeyRequest(app_id=b"s"),
             kpb.GetAppEnvEncryptPubKeyResponse),
            (RELEASE + "JoinCluster", kpb.JoinClusterRequest(node_name="Bad Name!"),
             kpb.JoinClusterResponse),
        ]
        with self.kms.guest_channel() as ch:
            for method, req, resp in cases:
                with self.assertRaises(grpc.RpcError) as e:
                    rpc(ch, method, req, resp)
                self.assertIn(e.exception.code(), (grpc.StatusCode.INVALID_ARGUMENT,
                                                   grpc.StatusCode.FAILED_PRECONDITION,
                                                   grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                   grpc.StatusCode.NOT_FOUND), method)
                self.assertTrue(e.exception.details(), method)
            # KmsAdmin is not on the guest listener at all.
            with self.assertRaises(grpc.RpcError) as e:
                rpc(ch, ADMIN + "GetKmsInfo", kpb.GetKmsInfoRequest(), kpb.GetKmsInfoResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        admin_cases = [
            (ADMIN + "PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=kpb.AppPolicy(
                app_id=b"short", verifier_policy_id="x")), kpb.PutAppPolicyResponse),
            (ADMIN + "PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=kpb.AppPolicy(
                app_id=b"a" * 20)), kpb.PutAppPolicyResponse),
            (ADMIN + "GetAppPolicy", kpb.GetAppPolicyRequest(app_id=b"z" * 20),
             kpb.GetAppPolicyResponse),
            (ADMIN + "ListAuditEvents", kpb.ListAuditEventsRequest(page_token="nope"),
             kpb.ListAuditEventsResponse),
            (ADMIN + "RotateRootKeys", kpb.RotateRootKeysRequest(expected_current_epoch=99),
             kpb.RotateRootKeysResponse),
        ]
        with self.kms.admin() as ch:
            for method, req, resp in admin_cases:
                with self.assertRaises(grpc.RpcError) as e:
                    rpc(ch, method, req, resp)
                self.assertIn(e.exception.code(), (grpc.StatusCode.INVALID_ARGUMENT,
                                                   grpc.StatusCode.NOT_FOUND,
                                                   grpc.StatusCode.ABORTED), method)
        # A viewer may read but not change.
        with self.kms.admin("viewer") as ch:
            rpc(ch, ADMIN + "GetKmsInfo", kpb.GetKmsInfoRequest(), kpb.GetKmsInfoResponse)
            with self.assertRaises(grpc.RpcError) as e:
                rpc(ch, ADMIN + "RotateRootKeys", kpb.RotateRootKeysRequest(),
                    kpb.RotateRootKeysResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with self.kms.guest_channel() as ch:
            info = rpc(ch, RELEASE + "GetPublicInfo", kpb.GetPublicInfoRequest(),
                       kpb.GetPublicInfoResponse)
        self.assertEqual(info.key_provider_id, self.key_provider_id)
        self.assertIsNone(self.kms.svc.proc.poll())

    def test_5_no_key_material_in_any_log(self):
        secrets = getattr(type(self), "secrets", None)
        self.assertTrue(secrets, "test_1 collects released secrets")
        logs = []
        for root, _, files in os.walk(self.stack.dir):
            logs += [os.path.join(root, f) for f in files if f.endswith(".log")]
        self.assertGreaterEqual(len(logs), 3)
        for path in logs:
            with open(path, "rb") as f:
                text = f.read()
            for s in secrets:
                for form in (s.hex().encode(), s.hex().upper().encode(), s):
                    self.assertNotIn(form, text, f"key material in {path}")

    def env_key(self, kms, app_id, epoch=None):
        # Env keys exist for apps bound to a policy on that node's store.
        with kms.admin() as ch:
            rpc(ch, ADMIN + "PutAppPolicy", kpb.PutAppPolicyRequest(app_policy=kpb.AppPolicy(
                app_id=app_id, verifier_policy_id="app-a")), kpb.PutAppPolicyResponse)
        req = kpb.GetAppEnvEncryptPubKeyRequest(app_id=app_id)
        if epoch is not None:
            req.epoch = epoch
        with kms.guest_channel() as ch:
            return rpc(ch, RELEASE + "GetAppEnvEncryptPubKey", req,
                       kpb.GetAppEnvEncryptPubKeyResponse).public_key

    def test_6_kill_during_first_start_and_rotation_keeps_surviving_keys(self):
        app = b"\x42" * 20
        rng = random.Random(7)
        for i in range(4):
            state = os.path.join(self.stack.dir, f"crash-{i}")
            port = free_port()
            args = [harness.binary("services/kms/pml-kms"), "--listen", "127.0.0.1:0",
                    "--metrics-listen", "", "--tls-cert", self.stack.cert("server-kms.pem"),
                    "--tls-key", self.stack.cert("server-kms.key"),
                    "--tls-ca", self.stack.cert("ca.pem"), "--state-dir", state,
                    "--guest-listen", f"127.0.0.1:{port}", "--verifier", self.verifier.addr,
                    "--verifier-cert", self.stack.cert("kms.pem"),
                    "--verifier-key", self.stack.cert("kms.key")]
            p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.25))
            p.send_signal(signal.SIGKILL)
            p.wait()
            node = Kms(self.stack, "kms-crash", state, self.verifier)
            first = self.env_key(node, app, 1)
            # Rotation interrupted by kill -9.
            rot = subprocess.Popen([harness.binary("tools/pmlctl/pmlctl"), "kms", "rotate",
                                    "--addr", node.svc.addr, "--pki-dir", self.stack.pki],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.05))
            node.svc.proc.send_signal(signal.SIGKILL)
            node.svc.proc.wait()
            rot.wait(timeout=30)
            self.stack.services.pop("kms-crash")
            node = Kms(self.stack, "kms-crash", state, self.verifier)
            self.assertEqual(self.env_key(node, app, 1), first, f"round {i}")
            with node.guest_channel() as ch:
                info = rpc(ch, RELEASE + "GetPublicInfo", kpb.GetPublicInfoRequest(),
                           kpb.GetPublicInfoResponse)
            self.assertIn(info.current_epoch, (1, 2))
            survivors = {e: self.env_key(node, app, e) for e in range(1, info.current_epoch + 1)}
            self.stack.stop("kms-crash")
            node = Kms(self.stack, "kms-crash", state, self.verifier)
            for e, k in survivors.items():
                self.assertEqual(self.env_key(node, app, e), k)
            self.stack.stop("kms-crash")

    def test_7_replicas_on_postgresql_derive_identical_keys(self):
        import pg  # tests/integration/pg.py
        with pg.LocalPostgres() as db:
            d = self.stack.dir
            a = Kms(self.stack, "kms-b", os.path.join(d, "pg-a"), self.verifier,
                    ["--store", db.url, "--replica-policy-id", "kms-replica",
                     "--replica-join-token-file", self.join_token, "--tee", "simulated"])
            # With --tee the member attests itself: GetPublicInfo carries its (simulated) evidence
            # and its guest TLS certificate is RA-TLS, which pmlctl appraises like any endpoint.
            with a.guest_channel() as ch:
                pub = rpc(ch, RELEASE + "GetPublicInfo", kpb.GetPublicInfoRequest(),
                          kpb.GetPublicInfoResponse)
            self.assertTrue(pub.kms_evidence.tdx_quote)
            self.assertTrue(pub.kms_evidence.simulated)
            verdict = harness.pmlctl("verify", "endpoint", f"https://{a.guest_addr}",
                                     "--policy-id", "kms-replica", "--as", "viewer",
                                     "--addr", self.verifier.addr, "--pki-dir", self.stack.pki,
                                     check=False)
            self.assertEqual(verdict.returncode, 0, verdict.stdout + verdict.stderr)
            self.assertIn("ALLOWED", verdict.stdout)
            self.assertIn("SIMULATED", verdict.stdout + verdict.stderr)
            b_state = os.path.join(d, "pg-b")
            b = Kms(self.stack, "kms-c", b_state, self.verifier,
                    ["--store", db.url, "--join", a.guest_addr, "--join-ca", a.root_ca(),
                     "--join-token-file", self.join_token, "--tee", "simulated"])
            app = b"\x24" * 20
            self.assertEqual(self.env_key(a, app), self.env_key(b, app))
            with a.admin() as ch:
                rpc(ch, ADMIN + "RotateRootKeys", kpb.RotateRootKeysRequest(reason="test"),
                    kpb.RotateRootKeysResponse)
            # The replica reads the new epoch from the shared store.
            self.assertEqual(self.env_key(a, app, 2), self.env_key(b, app, 2))
            with b.admin() as ch:
                info = rpc(ch, ADMIN + "GetKmsInfo", kpb.GetKmsInfoRequest(),
                           kpb.GetKmsInfoResponse)
            self.assertEqual(info.store_kind, "postgres")
            self.assertEqual({r.node_name for r in info.replicas}, {"kms-b", "kms-c"})
            # Both nodes' audit rows, in the one shared table, verify in their own chains (the
            # joiner's first row is its join).
            with b.admin() as ch:
                shared = list(rpc(ch, ADMIN + "ListAuditEvents",
                                  kpb.ListAuditEventsRequest(page_size=1000),
                                  kpb.ListAuditEventsResponse).events)
            chains = {}
            for e in shared:
                self.assertFalse(e.unauthenticated, e)
                chains.setdefault(e.node, []).append(e.node_sequence)
            self.assertEqual(set(chains), {"kms-b", "kms-c"})
            for node, seqs in chains.items():
                self.assertEqual(seqs, list(range(1, len(seqs) + 1)), node)
            self.stack.stop("kms-c")
            # A node whose evidence fails the replica policy gets nothing.
            self.put_verifier_policy("kms-replica", self.replica_policy(False))
            c_state = os.path.join(d, "pg-c")
            with self.assertRaises(RuntimeError) as e:
                Kms(self.stack, "kms-c", c_state, self.verifier,
                    ["--store", "sqlite:" + os.path.join(d, "pg-c.db"), "--join", a.guest_addr,
                     "--join-ca", a.root_ca(), "--join-token-file", self.join_token,
                     "--tee", "simulated"])
            self.assertIn("does not allow simulated evidence", str(e.exception))
            self.assertFalse(os.path.exists(os.path.join(c_state, "cluster.key")))
            # With the policy passing again, a wrong operator token gets nothing either.
            self.put_verifier_policy("kms-replica", self.replica_policy(True))
            bad_token = os.path.join(d, "bad-token")
            write(bad_token, "not-the-operator-token-000\n")
            with self.assertRaises(RuntimeError) as e:
                Kms(self.stack, "kms-c", c_state, self.verifier,
                    ["--store", "sqlite:" + os.path.join(d, "pg-c.db"), "--join", a.guest_addr,
                     "--join-ca", a.root_ca(), "--join-token-file", bad_token,
                     "--tee", "simulated"])
            self.assertIn("join token does not match", str(e.exception))
            self.assertFalse(os.path.exists(os.path.join(c_state, "cluster.key")))
            self.put_verifier_policy("kms-replica", self.replica_policy(True))
            self.stack.stop("kms-b")

    def test_8_pmlctl_reports_a_tampered_audit_row(self):
        import sqlite3

        def audit_check():
            return subprocess.run([harness.binary("tools/pmlctl/pmlctl"), "kms", "audit",
                                   "--check", "--addr", self.kms.svc.addr,
                                   "--pki-dir", self.stack.pki],
                                  capture_output=True, text=True, timeout=60)
        ok = audit_check()
        self.assertEqual(ok.returncode, 0, ok.stdout[-2000:] + ok.stderr)
        self.assertIn("listed events verify", ok.stderr)
        self.assertNotIn("UNAUTHENTICATED", ok.stdout)
        # A writer of the database (not a KMS node) drops the append-only triggers, as its owner
        # can, and turns the first refusal into a release.
        db = sqlite3.connect(os.path.join(self.kms.state, "kms.db"), timeout=30)
        try:
            db.execute("DROP TRIGGER kms_audit_no_update")
            row = db.execute("SELECT seq FROM kms_audit WHERE outcome = ? ORDER BY seq LIMIT 1",
                             (kpb.AUDIT_OUTCOME_REFUSED,)).fetchone()
            self.assertIsNotNone(row)
            db.execute("UPDATE kms_audit SET outcome = ? WHERE seq = ?",
                       (kpb.AUDIT_OUTCOME_ALLOWED, row[0]))
            db.commit()
        finally:
            db.close()
        bad = audit_check()
        self.assertEqual(bad.returncode, 1, bad.stdout[-2000:] + bad.stderr)
        self.assertIn("1 of", bad.stderr)
        flagged = [l for l in bad.stdout.splitlines() if "UNAUTHENTICATED" in l]
        self.assertEqual(len(flagged), 1, flagged)
        self.assertTrue(flagged[0].startswith(f"{row[0]} "), flagged[0])
        self.assertIn("MAC does not verify", flagged[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
