"""pml-verifier TDX verification over gRPC (issue 3), checked with Debian's python3-grpcio and
protoc-generated messages: every shared vector gives its expected.json result, bad input gets
INVALID_ARGUMENT with a reason while the service keeps serving, the collateral cache imports and
serves, roles hold, metrics count, and `pmlctl verify quote` prints verdicts with the right exit
codes. Expectations come from each vector's expected.json, never from this file.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/verifier_test.py
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.path.abspath(os.environ.get("PML_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
VECTORS = os.path.join(SHARED, "vectors", "tdx")
MAIN_VECTOR = "tdx-v4-phala-b0c06f"

GEN = tempfile.mkdtemp(prefix="pml-it-gen-")
subprocess.run(["protoc", f"-I{ROOT}/proto", f"-I{HERE}/proto", "-I/usr/include",
                f"--python_out={GEN}", "grpc/health/v1/health.proto",
                "pml/common/v1/evidence.proto", "pml/attestation/v1/attestation.proto"],
               check=True)


def _load(name, path):
    # The generated health module lives under grpc/health/v1, which the grpc package shadows,
    # so it is loaded by path (as foundation_test.py does).
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(GEN, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb2 = _load("health_pb2", "grpc/health/v1/health_pb2.py")
# attestation_pb2 imports pml.common.v1.evidence_pb2 by package name: GEN goes last on the path
# (after the real grpc package), and the pml packages are namespace packages.
sys.path.append(GEN)
import importlib  # noqa: E402
att = importlib.import_module("pml.attestation.v1.attestation_pb2")

SVC = "/pml.attestation.v1.Attestation/"
# Intel's TCB status spelling -> the proto enum (a vocabulary, not expected values).
TCB_ENUM = {
    "UpToDate": att.TCB_STATUS_UP_TO_DATE,
    "SWHardeningNeeded": att.TCB_STATUS_SW_HARDENING_NEEDED,
    "ConfigurationNeeded": att.TCB_STATUS_CONFIGURATION_NEEDED,
    "ConfigurationAndSWHardeningNeeded": att.TCB_STATUS_CONFIGURATION_AND_SW_HARDENING_NEEDED,
    "OutOfDate": att.TCB_STATUS_OUT_OF_DATE,
    "OutOfDateConfigurationNeeded": att.TCB_STATUS_OUT_OF_DATE_CONFIGURATION_NEEDED,
    "Revoked": att.TCB_STATUS_REVOKED,
    "TDRelaunchAdvised": att.TCB_STATUS_TD_RELAUNCH_ADVISED,
    "TDRelaunchAdvisedConfigurationNeeded":
        att.TCB_STATUS_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
}
MAX_SEND = 16 << 20


def read(path):
    with open(path, "rb") as f:
        return f.read()


def vector_dirs():
    names = sorted(n for n in os.listdir(VECTORS)
                   if not n.startswith(("_", ".")) and os.path.isdir(os.path.join(VECTORS, n)))
    assert names, f"no vectors under {VECTORS}"
    return names


def expected(name):
    with open(os.path.join(VECTORS, name, "expected.json")) as f:
        return json.load(f)


def expected_classes(exp):
    """'SGX_CRL_INVALID_SIGNATURE / INVALID_PCK_CRL' or 'COLLATERAL_EXPIRED (...)'."""
    text = exp["error_class"].split(" (")[0]
    return [c.strip() for c in text.split("/")]


def class_matches(got, alternatives):
    for want in alternatives:
        if got == want:
            return True
        # COLLATERAL_EXPIRED names the family of per-item expiry classes (lib/tdx/errors.h).
        if want == "COLLATERAL_EXPIRED" and got.endswith("_EXPIRED"):
            return True
    return False


def channel(stack, svc, role="operator"):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(stack.pki, "ca.pem")),
        private_key=read(os.path.join(stack.pki, f"{role}.key")),
        certificate_chain=read(os.path.join(stack.pki, f"{role}.pem")))
    return grpc.secure_channel(svc.addr, creds,
                               options=[("grpc.max_send_message_length", MAX_SEND),
                                        ("grpc.max_receive_message_length", MAX_SEND)])


def call(ch, method, req, resp_type, timeout=30):
    stub = ch.unary_unary(SVC + method, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=resp_type.FromString)
    return stub(req, timeout=timeout)


def verify(ch, req, timeout=30):
    return call(ch, "VerifyTdxQuote", req, att.VerifyTdxQuoteResponse, timeout).result


def vector_request(name, with_collateral=True):
    exp = expected(name)
    req = att.VerifyTdxQuoteRequest(quote=read(os.path.join(VECTORS, name, "quote.bin")))
    if with_collateral:
        req.collateral_json = read(os.path.join(VECTORS, name, "collateral.json"))
    req.verification_time.seconds = exp["verify_at_unix"]
    return req


def health_status(ch):
    stub = ch.unary_unary("/grpc.health.v1.Health/Check",
                          request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                          response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return stub(health_pb2.HealthCheckRequest(), timeout=10).status


def metrics_text(svc):
    return urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics",
                                  timeout=10).read().decode()


def metric_value(body, name, labels):
    """Sum of the series of `name` whose labels include every item of `labels`."""
    total, found = 0.0, False
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


GPU_VECTORS = os.path.join(SHARED, "vectors", "gpu")
GPU_EXPECTATIONS = os.path.join(ROOT, "lib", "gpu", "testdata", "vector_expectations.json")


def gpu_case(dir_name, case_name):
    """An entry of lib/gpu/testdata/vector_expectations.json (transcribed PROVENANCE.md)."""
    with open(GPU_EXPECTATIONS) as f:
        for c in json.load(f)["cases"]:
            if c["dir"] == dir_name and c["name"] == case_name:
                return c
    raise AssertionError(f"no GPU expectation {dir_name}/{case_name}")


def gpu_request(dir_name, case_name):
    c = gpu_case(dir_name, case_name)
    d = os.path.join(GPU_VECTORS, dir_name)
    if "report" in c:
        report = read(os.path.join(d, c["report"]))
    else:
        report = bytes.fromhex("".join(read(os.path.join(d, c["report_hex"])).decode().split()))
    nonce = c.get("nonce") or read(os.path.join(d, c["nonce_file"])).decode().strip()
    req = att.VerifyGpuEvidenceRequest(expected_nonce=bytes.fromhex(nonce), offline=True)
    ev = req.evidence.add(index=0, uuid="GPU-test", spdm_report=report,
                          certificate_chain=read(os.path.join(d, c["chain"])))
    ev.device_kind = 1  # GPU_DEVICE_KIND_GPU
    if "rim_dir" in c:
        rim_dir = os.path.join(d, c["rim_dir"])
        for f in sorted(os.listdir(rim_dir)):
            if f.endswith(".xml"):
                req.rims.add(rim_id=f[:-4], content=read(os.path.join(rim_dir, f)))
    for rim_id, f in c.get("rims", {}).items():
        req.rims.add(rim_id=rim_id, content=read(os.path.join(d, f)))
    import datetime
    now = datetime.datetime.strptime(c["now"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    req.verification_time.seconds = int(now.timestamp())
    return c, req


class VerifierTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        cls.cache_dir = os.path.join(cls.stack.dir, "collateral-cache")
        cls.svc = cls.stack.start("verifier", extra_args=[
            "--collateral-cache-dir", cls.cache_dir, "--offline"])

    @classmethod
    def tearDownClass(cls):
        codes = cls.stack.close()
        assert codes.get("verifier") == 0, f"verifier exited {codes} on SIGTERM"

    def assert_serving(self):
        self.assertIsNone(self.svc.proc.poll(), "the verifier died:\n" + self.svc.log())
        with channel(self.stack, self.svc) as ch:
            self.assertEqual(health_status(ch), health_pb2.HealthCheckResponse.SERVING)

    def check_against_expected(self, name, result_or_error, exp):
        if exp.get("ok"):
            self.assertNotIsInstance(result_or_error, grpc.RpcError, name)
            r = result_or_error
            self.assertTrue(r.verified, f"{name}: {r.error_class} {r.error_message}")
            self.assertEqual(r.tcb_status, TCB_ENUM[exp["status"]], name)
            self.assertEqual(sorted(r.advisory_ids), sorted(exp["advisory_ids"]), name)
            return
        if isinstance(result_or_error, grpc.RpcError):
            # Only an unparseable quote is an RPC error.
            self.assertEqual(result_or_error.code(), grpc.StatusCode.INVALID_ARGUMENT, name)
            self.assertTrue(any(c in result_or_error.details() for c in expected_classes(exp)),
                            f"{name}: {result_or_error.details()}")
            return
        r = result_or_error
        self.assertFalse(r.verified, name)
        self.assertTrue(class_matches(r.error_class, expected_classes(exp)),
                        f"{name}: got {r.error_class} ({r.error_message}), want {exp['error_class']}")
        self.assertTrue(r.error_message, name)

    def test_every_vector_gives_its_expected_result(self):
        with channel(self.stack, self.svc) as ch:
            for name in vector_dirs():
                exp = expected(name)
                try:
                    got = verify(ch, vector_request(name))
                except grpc.RpcError as e:
                    got = e
                self.check_against_expected(name, got, exp["expected"])
                for case in exp.get("time_cases", []):
                    req = vector_request(name)
                    req.verification_time.seconds = case["verify_at_unix"]
                    try:
                        got = verify(ch, req)
                    except grpc.RpcError as e:
                        got = e
                    self.check_against_expected(f"{name}@{case['verify_at_unix']}", got,
                                                case["expected"])
                    if not isinstance(got, grpc.RpcError) and exp["expected"].get("ok"):
                        # Only the collateral time failed: reported, with the TCB status.
                        self.assertTrue(got.collateral_expired or
                                        got.error_class == "COLLATERAL_NOT_YET_VALID", name)
                        self.assertEqual(got.tcb_status, TCB_ENUM[exp["expected"]["status"]],
                                         name)

    def test_gpu_evidence_over_grpc(self):
        c, req = gpu_request("h100nvl-595.71.05-azure-nras", "full")
        with channel(self.stack, self.svc, role="viewer") as ch:
            r = call(ch, "VerifyGpuEvidence", req, att.VerifyGpuEvidenceResponse)
        self.assertEqual(len(r.devices), 1)
        d = r.devices[0]
        self.assertEqual(d.measres, "success" if c["expect"]["measres"] else "fail")
        self.assertEqual(d.gpu_driver_version, c["expect"]["driver_version"])
        self.assertEqual(d.gpu_vbios_version, c["expect"]["vbios_version"])
        self.assertEqual(d.ueid, c["expect"]["ueid"])
        self.assertTrue(d.gpu_attestation_report_signature_verified)
        self.assertTrue(d.gpu_driver_rim_signature_verified)
        # Offline without OCSP responses: NVIDIA's default policy cannot pass, and says why.
        self.assertFalse(r.overall_att_result)
        self.assertTrue(any("ocsp" in f for f in d.failed_checks), list(d.failed_checks))
        self.assertFalse(r.simulated)
        claims = json.loads(r.claims_json)
        self.assertEqual(claims["GPU-0"]["x-nvidia-gpu-driver-version"],
                         c["expect"]["driver_version"])

    def test_gpu_refusal_is_a_result_and_garbage_is_invalid_argument(self):
        c, req = gpu_request("negative/bad-report-signature", "gpu")
        with channel(self.stack, self.svc) as ch:
            r = call(ch, "VerifyGpuEvidence", req, att.VerifyGpuEvidenceResponse)
            self.assertFalse(r.overall_att_result)
            self.assertFalse(r.devices[0].passed)
            self.assertFalse(r.devices[0].gpu_attestation_report_signature_verified)
            self.assertIn(c["expect"]["error_class"], r.devices[0].failed_checks[0])
            req.evidence[0].spdm_report = b"\x11\xe0" * 20
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "VerifyGpuEvidence", req, att.VerifyGpuEvidenceResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("evidence[0].spdm_report", e.exception.details())
        with channel(self.stack, self.svc, role="vmm") as ch:
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "VerifyGpuEvidence", req, att.VerifyGpuEvidenceResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assert_serving()

    def test_result_carries_parsed_fields_and_collateral_window(self):
        exp = expected(MAIN_VECTOR)
        quote = read(os.path.join(VECTORS, MAIN_VECTOR, "quote.bin"))
        with channel(self.stack, self.svc) as ch:
            r = verify(ch, vector_request(MAIN_VECTOR))
        self.assertTrue(r.verified)
        self.assertEqual(r.fmspc.hex().upper(), exp["tcb_info"]["fmspc"].upper())
        self.assertEqual(r.tcb_evaluation_data_number, exp["tcb_info"]["tcbEvaluationDataNumber"])
        self.assertEqual(r.collateral_expiry_item, exp["collateral_window"]["end_set_by"])
        self.assertEqual(r.collateral_source, att.COLLATERAL_SOURCE_REQUEST)
        self.assertFalse(r.simulated)
        self.assertEqual(r.verification_time.seconds, exp["verify_at_unix"])
        self.assertEqual(r.header.version, int.from_bytes(quote[0:2], "little"))
        # TD report 1.0 after the 48-byte header (tdx-quote-verification.md §2.2).
        body = quote[48:48 + 584]
        self.assertEqual(r.td_report.mrtd, body[136:184])
        self.assertEqual(r.td_report.rtmr3, body[472:520])
        self.assertEqual(r.td_report.report_data, body[520:584])
        self.assertEqual(r.td_report.version, "1.0")

    def test_bad_input_is_invalid_argument_and_service_keeps_serving(self):
        quote = read(os.path.join(VECTORS, MAIN_VECTOR, "quote.bin"))
        collateral = read(os.path.join(VECTORS, MAIN_VECTOR, "collateral.json"))
        wrong_version = b"\x09\x00" + quote[2:]
        cases = [
            ("empty", att.VerifyTdxQuoteRequest(quote=b"", collateral_json=collateral), "quote"),
            ("truncated", att.VerifyTdxQuoteRequest(quote=quote[:100], collateral_json=collateral),
             "UNSUPPORTED_QUOTE_FORMAT"),
            ("10 MB of garbage",
             att.VerifyTdxQuoteRequest(quote=os.urandom(10 * 1024 * 1024),
                                       collateral_json=collateral), "UNSUPPORTED_QUOTE_FORMAT"),
            ("wrong version",
             att.VerifyTdxQuoteRequest(quote=wrong_version, collateral_json=collateral),
             "UNSUPPORTED_QUOTE_FORMAT"),
            ("garbage collateral", att.VerifyTdxQuoteRequest(quote=quote, collateral_json=b"{x"),
             "collateral_json"),
        ]
        with channel(self.stack, self.svc) as ch:
            for name, req, reason in cases:
                with self.assertRaises(grpc.RpcError, msg=name) as cm:
                    verify(ch, req)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, name)
                self.assertIn(reason, cm.exception.details(), name)
                self.assertIn("quote" if "collateral" not in name else "collateral",
                              cm.exception.details(), name)
                self.assert_serving()
            # And a good quote still verifies afterwards.
            self.assertTrue(verify(ch, vector_request(MAIN_VECTOR)).verified)

    def test_viewer_can_verify_but_not_refresh(self):
        with channel(self.stack, self.svc, role="viewer") as ch:
            self.assertTrue(verify(ch, vector_request(MAIN_VECTOR)).verified)
            call(ch, "GetCollateralCacheStatus", att.GetCollateralCacheStatusRequest(),
                 att.GetCollateralCacheStatusResponse)
            with self.assertRaises(grpc.RpcError) as cm:
                call(ch, "RefreshCollateral", att.RefreshCollateralRequest(),
                     att.RefreshCollateralResponse)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_imported_collateral_is_cached_listed_and_used(self):
        exp = expected(MAIN_VECTOR)
        fmspc = exp["tcb_info"]["fmspc"].upper()
        with channel(self.stack, self.svc) as ch:
            resp = call(ch, "RefreshCollateral", att.RefreshCollateralRequest(
                import_collateral_json=read(os.path.join(VECTORS, MAIN_VECTOR,
                                                         "collateral.json"))),
                att.RefreshCollateralResponse)
            self.assertEqual([e.key for e in resp.refreshed], [fmspc])
            self.assertFalse(resp.failures)
            status = call(ch, "GetCollateralCacheStatus", att.GetCollateralCacheStatusRequest(),
                          att.GetCollateralCacheStatusResponse)
            entry = [e for e in status.entries if e.key == fmspc]
            self.assertEqual(len(entry), 1, status)
            self.assertEqual(entry[0].kind, att.COLLATERAL_KIND_INTEL_TCB)
            self.assertEqual(entry[0].expiry_item, exp["collateral_window"]["end_set_by"])
            self.assertEqual(entry[0].origin, "bundle:request")
            self.assertEqual(len(entry[0].content_sha256), 32)
            r = verify(ch, vector_request(MAIN_VECTOR, with_collateral=False))
            self.assertTrue(r.verified, r.error_message)
            self.assertEqual(r.tcb_status, TCB_ENUM[exp["expected"]["status"]])
            self.assertEqual(r.collateral_source, att.COLLATERAL_SOURCE_CACHE)
            # Fetching needs --pcs-url: refused with the reason, not a crash.
            with self.assertRaises(grpc.RpcError) as cm:
                call(ch, "RefreshCollateral", att.RefreshCollateralRequest(force=True),
                     att.RefreshCollateralResponse)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("--pcs-url", cm.exception.details())

    def test_unknown_platform_offline_is_failed_precondition(self):
        # A vector whose FMSPC nobody imported: offline, so no collateral can be had.
        other = next(n for n in vector_dirs() if n.startswith("sgx-"))
        with channel(self.stack, self.svc) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                verify(ch, vector_request(other, with_collateral=False))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("fmspc", cm.exception.details())
        self.assert_serving()

    def test_metrics_count_verifications(self):
        exp = expected(MAIN_VECTOR)
        labels = {"result": "verified", "tcb_status": exp["expected"]["status"]}
        with channel(self.stack, self.svc) as ch:
            before = metric_value(metrics_text(self.svc), "pml_verifier_tdx_verifications_total",
                                  labels) or 0
            verify(ch, vector_request(MAIN_VECTOR))
            verify(ch, vector_request(MAIN_VECTOR))
            with self.assertRaises(grpc.RpcError):
                verify(ch, att.VerifyTdxQuoteRequest(quote=b"\x04\x00garbage"))
        body = metrics_text(self.svc)
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        verified = metric_value(body, "pml_verifier_tdx_verifications_total", labels)
        self.assertIsNotNone(verified, body)
        self.assertGreaterEqual(verified, before + 2)
        self.assertGreaterEqual(metric_value(body, "pml_verifier_tdx_verifications_total",
                                             {"result": "invalid"}) or 0, 1)
        self.assertGreaterEqual(metric_value(body, "pml_verifier_tdx_verification_seconds_count",
                                             {}) or 0, 3)
        self.assertGreaterEqual(metric_value(body, "pml_verifier_collateral_cache_hits_total",
                                             {"cache": "collateral"}) or 0, 1)
        self.assertIsNotNone(metric_value(body, "pml_verifier_collateral_cache_misses_total",
                                          {"cache": "collateral"}))


class PmlctlVerifyQuoteTest(unittest.TestCase):
    def run_pmlctl(self, name, *extra):
        exp = expected(name)
        return harness.pmlctl("verify", "quote", os.path.join(VECTORS, name, "quote.bin"),
                              "--collateral", os.path.join(VECTORS, name, "collateral.json"),
                              "--at", str(exp["verify_at_unix"]), *extra, check=False)

    def test_verified_vector_prints_verdict_and_exits_zero(self):
        exp = expected(MAIN_VECTOR)
        out = self.run_pmlctl(MAIN_VECTOR)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("VERIFIED", out.stdout)
        self.assertIn(exp["expected"]["status"], out.stdout)
        self.assertIn(exp["tcb_info"]["fmspc"].upper(), out.stdout)
        self.assertIn("mrtd:", out.stdout)
        out = self.run_pmlctl(MAIN_VECTOR, "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        j = json.loads(out.stdout)
        self.assertTrue(j["verified"])
        self.assertEqual(j["tcb_status"], exp["expected"]["status"])

    def test_negative_vectors_exit_one_with_the_intel_class(self):
        for name in (n for n in vector_dirs() if n.startswith("neg-")):
            exp = expected(name)
            out = self.run_pmlctl(name, "--json")
            self.assertEqual(out.returncode, 1, f"{name}: {out.stdout}{out.stderr}")
            j = json.loads(out.stdout)
            self.assertFalse(j["verified"])
            self.assertTrue(class_matches(j["error_class"], expected_classes(exp["expected"])),
                            f"{name}: {j['error_class']}")
        out = self.run_pmlctl(next(n for n in vector_dirs() if n.startswith("neg-")))
        self.assertEqual(out.returncode, 1)
        self.assertIn("REJECTED  error_class=", out.stdout)

    def test_usage_errors_exit_two(self):
        out = harness.pmlctl("verify", "quote", "/nonexistent/quote.bin", "--collateral",
                             "/nonexistent/c.json", check=False)
        self.assertEqual(out.returncode, 2)
        self.assertIn("error", out.stderr)
        out = harness.pmlctl("verify", "quote", check=False)
        self.assertEqual(out.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
