"""Foundation integration test (issue 2): all four services on loopback with real mTLS, checked
with clients nobody here wrote: Debian's python3-grpcio (health, reflection, TLS refusals, role
checks), @grpc/grpc-js from npm (tests/node/foundation_client.js), promtool for /metrics.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/foundation_test.py
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import grpc
from google.protobuf import descriptor_pb2

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GEN = tempfile.mkdtemp(prefix="pml-it-gen-")
subprocess.run(["protoc", f"-I{ROOT}/proto", f"-I{HERE}/proto", f"--python_out={GEN}",
                "grpc/health/v1/health.proto", "reflection.proto"], check=True)


def _load(name, path):
    # The generated health module lives under grpc/health/v1, which the grpc package shadows,
    # so load the generated files by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(GEN, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb2 = _load("health_pb2", "grpc/health/v1/health_pb2.py")
reflection_pb2 = _load("reflection_pb2", "reflection_pb2.py")

SERVICE_NAMES = {
    "verifier": ["pml.attestation.v1.Attestation"],
    # KeyRelease is served on pml-kms's separate guest-facing listener (tests/integration/kms_test.py).
    "kms": ["pml.kms.v1.KmsAdmin"],
    "vmm": ["pml.vmm.v1.Vmm"],
    "guest-agent": ["pml.guest.v1.GuestAgent"],
}
# One operator-only RPC per service: (method, request bytes) — an empty message is valid input.
OPERATOR_ONLY = {
    "verifier": "/pml.attestation.v1.Attestation/PutPolicy",
    "kms": "/pml.kms.v1.KmsAdmin/DeleteAppPolicy",
    "vmm": "/pml.vmm.v1.Vmm/CreateVm",
}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(stack, svc, role="operator", pki=None, with_cert=True):
    pki = pki or stack.pki
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(stack.pki, "ca.pem")),
        private_key=read(os.path.join(pki, f"{role}.key")) if with_cert else None,
        certificate_chain=read(os.path.join(pki, f"{role}.pem")) if with_cert else None)
    return grpc.secure_channel(svc.addr, creds)


def health_check(ch, service="", timeout=10):
    call = ch.unary_unary("/grpc.health.v1.Health/Check",
                          request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                          response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return call(health_pb2.HealthCheckRequest(service=service), timeout=timeout)


def raw_call(ch, method, timeout=10):
    call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return call(b"", timeout=timeout)


def served_cert_der(svc, stack):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(stack.pki, "ca.pem"))
    ctx.load_cert_chain(stack.cert("operator.pem"), stack.cert("operator.key"))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", svc.grpc_port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True), tls.version()


class FoundationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        for name in harness.SERVICES:
            cls.stack.start(name, extra_args=harness.default_args(cls.stack, name))

    @classmethod
    def tearDownClass(cls):
        codes = cls.stack.close()
        # Graceful shutdown on SIGTERM exits 0.
        for name, code in codes.items():
            assert code == 0, f"{name} exited {code} on SIGTERM"

    def test_every_service_reports_serving(self):
        for name, svc in self.stack.services.items():
            with channel(self.stack, svc) as ch:
                self.assertEqual(health_check(ch).status, health_pb2.HealthCheckResponse.SERVING, name)
                for s in SERVICE_NAMES[name]:
                    self.assertEqual(health_check(ch, s).status,
                                     health_pb2.HealthCheckResponse.SERVING, f"{name} {s}")

    def test_reflection_lists_each_service_and_its_methods(self):
        expected_methods = {
            "pml.vmm.v1.Vmm": {"CreateVm", "ListVms", "WatchVms", "StreamLogs"},
            "pml.attestation.v1.Attestation": {"VerifyTdxQuote", "Appraise", "GetJwks"},
            "pml.kms.v1.KmsAdmin": {"RotateRootKeys", "ListAuditEvents"},
            "pml.guest.v1.GuestAgent": {"GetQuote", "EmitEvent"},
        }
        for name, svc in self.stack.services.items():
            with channel(self.stack, svc) as ch:
                stream = ch.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                    request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                    response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
                reqs = [reflection_pb2.ServerReflectionRequest(list_services="*")]
                reqs += [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s)
                         for s in SERVICE_NAMES[name]]
                resps = list(stream(iter(reqs), timeout=10))
                listed = {s.name for s in resps[0].list_services_response.service}
                for s in SERVICE_NAMES[name] + ["grpc.health.v1.Health",
                                                "grpc.reflection.v1alpha.ServerReflection"]:
                    self.assertIn(s, listed, name)
                for s, resp in zip(SERVICE_NAMES[name], resps[1:]):
                    methods = set()
                    for raw in resp.file_descriptor_response.file_descriptor_proto:
                        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                        for sd in fd.service:
                            if f"{fd.package}.{sd.name}" == s:
                                methods |= {m.name for m in sd.method}
                    self.assertTrue(expected_methods[s] <= methods, f"{s}: {methods}")

    def test_connection_without_client_certificate_is_refused(self):
        for name, svc in self.stack.services.items():
            with channel(self.stack, svc, with_cert=False) as ch:
                with self.assertRaises(grpc.RpcError, msg=name) as cm:
                    health_check(ch, timeout=5)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, name)

    def test_client_certificate_from_another_ca_is_refused(self):
        other = os.path.join(self.stack.dir, "other-pki")
        harness.pmlctl("pki", "init", "--dir", other)
        for name, svc in self.stack.services.items():
            with channel(self.stack, svc, pki=other) as ch:
                with self.assertRaises(grpc.RpcError, msg=name) as cm:
                    health_check(ch, timeout=5)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, name)

    def test_viewer_calling_operator_only_rpc_is_denied(self):
        for name, method in OPERATOR_ONLY.items():
            svc = self.stack.services[name]
            with channel(self.stack, svc, role="viewer") as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    raw_call(ch, method)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED, method)
                self.assertIn("role viewer may not call", cm.exception.details())
            # The operator passes authorization and reaches the handler: not yet implemented
            # ones name their issue; implemented ones answer the empty request on its merits
            # (the verifier here runs without --state-dir: FAILED_PRECONDITION saying so).
            with channel(self.stack, svc, role="operator") as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    raw_call(ch, method)
                self.assertNotEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED, method)
                if cm.exception.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self.assertIn("issue", cm.exception.details())
                elif name == "kms":
                    # The empty request is refused on its merits.
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("app_id", cm.exception.details())
                elif name == "vmm":
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("request_id", cm.exception.details())
                else:
                    self.assertIn("--state-dir", cm.exception.details(), method)

    def test_pmlctl_health_and_version(self):
        for name, svc in self.stack.services.items():
            out = harness.pmlctl("health", "--addr", svc.addr, "--pki-dir", self.stack.pki)
            self.assertIn("SERVING", out.stdout)
            out = harness.pmlctl("version", "--addr", svc.addr, "--pki-dir", self.stack.pki,
                                 "--as", "viewer")
            self.assertIn(name, out.stdout)
            self.assertIn("0.1.0", out.stdout)

    def test_grpc_js_client(self):
        node_dir = os.path.join(ROOT, "tests", "node")
        targets = {n: s.addr for n, s in self.stack.services.items()}
        out = subprocess.run(["node", os.path.join(node_dir, "foundation_client.js"),
                              json.dumps({"pki": self.stack.pki, "targets": targets,
                                          "proto_root": os.path.join(ROOT, "proto")})],
                             capture_output=True, text=True, timeout=120, cwd=node_dir)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for name in harness.SERVICES:
            self.assertEqual(result["health"][name], "SERVING")
        self.assertEqual(result["viewer_create_vm"]["code"], grpc.StatusCode.PERMISSION_DENIED.value[0])
        self.assertEqual(result["operator_list_vms"]["code"], 0, result["operator_list_vms"])
        self.assertEqual(result["operator_list_vms"]["resp"]["total_size"], 0)

    def test_metrics_pass_promtool_and_count_calls(self):
        for name, svc in self.stack.services.items():
            with channel(self.stack, svc) as ch:
                for _ in range(3):
                    health_check(ch)
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=10).read().decode()
            check = subprocess.run(["promtool", "check", "metrics"], input=body,
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(check.returncode, 0, f"{name}: {check.stdout}{check.stderr}")
            line = [l for l in body.splitlines() if l.startswith("grpc_server_handled_total{")
                    and 'grpc_method="Check"' in l and 'grpc_code="OK"' in l]
            self.assertTrue(line, f"{name}: no handled_total for Check:\n{body}")
            self.assertGreaterEqual(float(line[0].rsplit(" ", 1)[1]), 3)
            self.assertIn('grpc_service="grpc.health.v1.Health"', line[0])
            self.assertIn("grpc_server_started_total{", body)
            self.assertIn("grpc_server_handling_seconds_bucket{", body)
            self.assertIn(f'pml_build_info{{component="{name}"', body)

    def test_replaced_server_certificate_takes_effect_without_restart(self):
        svc = self.stack.services["verifier"]
        before, version = served_cert_der(svc, self.stack)
        self.assertEqual(version, "TLSv1.3")
        pki = self.stack.pki
        tmp = os.path.join(self.stack.dir, "rotate")
        os.makedirs(tmp)
        key, csr, crt = (os.path.join(tmp, n) for n in ("new.key", "new.csr", "new.pem"))
        ext = os.path.join(tmp, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,URI:spiffe://pml/verifier/verifier\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True)
        subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=pml-verifier rotated", "-out", csr], check=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.pem"),
                        "-CAkey", os.path.join(pki, "ca.key"), "-CAcreateserial", "-days", "2",
                        "-extfile", ext, "-out", crt], check=True, capture_output=True)
        with open(crt) as f:
            new_der = ssl.PEM_cert_to_DER_cert(f.read())
        # Replace key then certificate, each atomically (rename), as an operator's tooling would.
        os.replace(key, os.path.join(pki, "server-verifier.key"))
        os.replace(crt, os.path.join(pki, "server-verifier.pem"))
        harness.wait_for(lambda: served_cert_der(svc, self.stack)[0] == new_der, 30,
                         "the verifier to serve the replaced certificate")
        self.assertNotEqual(before, new_der)
        self.assertEqual(svc.proc.poll(), None, "the verifier must not have restarted")
        with channel(self.stack, svc) as ch:
            self.assertEqual(health_check(ch).status, health_pb2.HealthCheckResponse.SERVING)


class BadConfigurationTest(unittest.TestCase):
    """Binaries exit non-zero with a one-line reason on bad configuration."""

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def run_service(self, *args):
        rel, stem = harness.SERVICES["vmm"]
        pki = self.stack.pki
        base = {"--listen": "127.0.0.1:0", "--metrics-listen": "127.0.0.1:0",
                "--tls-cert": f"{pki}/{stem}.pem", "--tls-key": f"{pki}/{stem}.key",
                "--tls-ca": f"{pki}/ca.pem"}
        vmm_args = harness.default_args(self.stack, "vmm")
        for i in range(0, len(vmm_args), 2):
            base[vmm_args[i]] = vmm_args[i + 1]
        for i in range(0, len(args), 2):
            base[args[i]] = args[i + 1]
        argv = [harness.binary(rel)]
        for k, v in base.items():
            argv += [k, v]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def assert_one_line_error(self, out, needle):
        self.assertNotEqual(out.returncode, 0)
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, out.stderr)
        self.assertIn("error", lines[0])
        self.assertIn(needle, lines[0])

    def test_missing_cert_file(self):
        self.assert_one_line_error(self.run_service("--tls-cert", "/nonexistent/cert.pem"), "--tls-cert")

    def test_unreadable_key(self):
        bad = os.path.join(self.stack.dir, "bad.key")
        with open(bad, "w") as f:
            f.write("not a key\n")
        self.assert_one_line_error(self.run_service("--tls-key", bad), "--tls-key")

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            self.assert_one_line_error(self.run_service("--listen", f"127.0.0.1:{port}"), "cannot listen")
            self.assert_one_line_error(self.run_service("--metrics-listen", f"127.0.0.1:{port}"),
                                       "cannot serve metrics")

    def test_json_logs_are_one_object_per_line(self):
        self.stack.start("verifier", extra_args=["--offline"])
        svc = self.stack.start("kms", extra_args=["--log-format", "json",
                                                  *harness.default_args(self.stack, "kms")])
        self.stack.stop("kms")
        lines = [l for l in svc.log().splitlines() if l.strip()]
        self.assertGreaterEqual(len(lines), 2, svc.log())
        events = []
        for line in lines:
            obj = json.loads(line)  # every line is a JSON object
            self.assertEqual(obj["component"], "kms")
            events.append(obj["event"])
        self.assertIn("serving", events)
        self.assertIn("stopped", events)
        serving = next(json.loads(l) for l in lines if json.loads(l)["event"] == "serving")
        self.assertEqual(int(serving["grpc_port"]), svc.grpc_port)

    def test_help_documents_every_flag(self):
        for name, (rel, _) in harness.SERVICES.items():
            out = subprocess.run([harness.binary(rel), "--help"], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 0)
            for flag in ("--listen", "--tls-cert", "--tls-key", "--tls-ca", "--metrics-listen",
                         "--log-format", "--cert-reload-seconds", "--ready-file"):
                self.assertIn(flag, out.stdout, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
