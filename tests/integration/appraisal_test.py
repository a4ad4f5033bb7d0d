"""pml-verifier appraisal over gRPC (issue 5), with Debian's python3-grpcio: policies are stored,
versioned and survive a restart; a real TDX vector is appraised under a policy that lists its
measurements (taken from the verifier's own parse of the quote, never from this file) and the
signed EAR token verifies against the published JWKS (checked here with python3-cryptography, an
implementation independent of ours); one changed measurement refuses it with the named check;
keys rotate; roles hold.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/appraisal_test.py
"""
import base64
import json
import os
import sys
import unittest

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from verifier_test import (MAIN_VECTOR, VECTORS, att, call, channel, expected, read,  # noqa: E402
                           verify, vector_request)


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_es256(token, jwks):
    """Independent ES256 check: returns the payload, or raises."""
    head_b64, payload_b64, sig_b64 = token.split(".")
    header = json.loads(b64url(head_b64))
    assert header["alg"] == "ES256", header
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64url(key["x"]), "big"),
                                        int.from_bytes(b64url(key["y"]), "big"),
                                        ec.SECP256R1()).public_key()
    sig = b64url(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, f"{head_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    return header, json.loads(b64url(payload_b64))


class AppraisalTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        cls.state = os.path.join(cls.stack.dir, "state")
        cls.args = ["--collateral-cache-dir", os.path.join(cls.stack.dir, "cache"), "--offline",
                    "--state-dir", cls.state, "--token-ttl", "300"]
        cls.svc = cls.stack.start("verifier", extra_args=cls.args)
        # The vector's collateral goes into the cache, as an operator would import it.
        with channel(cls.stack, cls.svc) as ch:
            call(ch, "RefreshCollateral", att.RefreshCollateralRequest(
                import_collateral_json=read(os.path.join(VECTORS, MAIN_VECTOR, "collateral.json"))),
                 att.RefreshCollateralResponse)
            cls.td = verify(ch, vector_request(MAIN_VECTOR)).td_report
        cls.exp = expected(MAIN_VECTOR)

    @classmethod
    def tearDownClass(cls):
        codes = cls.stack.close()
        assert all(c == 0 for c in codes.values()), codes

    def policy(self, **changes):
        p = {"allowed_os": [{"mrtd": self.td.mrtd.hex(), "rtmr0": self.td.rtmr0.hex(),
                             "rtmr1": self.td.rtmr1.hex(), "rtmr2": self.td.rtmr2.hex()}],
             "allow_any_app": True, "require_event_log": False,
             "allowed_tcb_statuses": [self.exp["expected"]["status"]],
             "allowed_image_variants": ["production", "development"]}
        p.update(changes)
        return json.dumps(p)

    def appraise(self, ch, policy_id, **kw):
        req = att.AppraiseRequest(policy_id=policy_id, report_data=self.td.report_data, **kw)
        req.evidence.tdx_quote = read(os.path.join(VECTORS, MAIN_VECTOR, "quote.bin"))
        req.verification_time.seconds = self.exp["verify_at_unix"]
        return call(ch, "Appraise", req, att.AppraiseResponse)

    def test_1_policies_are_versioned_listed_and_guarded(self):
        with channel(self.stack, self.svc) as ch:
            v1 = call(ch, "PutPolicy", att.PutPolicyRequest(id="phala-os", policy_json=self.policy(),
                                                            description="the phala vector"),
                      att.PutPolicyResponse).policy
            self.assertEqual(v1.version, 1)
            self.assertEqual(v1.created_by, "spiffe://pml/operator/operator")
            self.assertEqual(len(v1.sha256), 32)
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "PutPolicy", att.PutPolicyRequest(id="phala-os", policy_json=self.policy(),
                                                           expected_version=7),
                     att.PutPolicyResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "PutPolicy", att.PutPolicyRequest(
                    id="bad", policy_json=json.dumps({"allowed_os": [], "gpu": {"cont": 1}})),
                     att.PutPolicyResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("gpu.cont", e.exception.details())
            got = call(ch, "GetPolicy", att.GetPolicyRequest(id="phala-os"),
                       att.GetPolicyResponse).policy
            self.assertEqual(got.version, 1)
            self.assertEqual(got.description, "the phala vector")
            listed = call(ch, "ListPolicies", att.ListPoliciesRequest(),
                          att.ListPoliciesResponse).policies
            self.assertIn("phala-os", [p.id for p in listed])
        with channel(self.stack, self.svc, role="viewer") as ch:
            call(ch, "GetPolicy", att.GetPolicyRequest(id="phala-os"), att.GetPolicyResponse)
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "DeletePolicy", att.DeletePolicyRequest(id="phala-os"),
                     att.DeletePolicyResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_2_real_vector_is_allowed_and_the_token_verifies_independently(self):
        with channel(self.stack, self.svc) as ch:
            call(ch, "PutPolicy", att.PutPolicyRequest(id="phala-os", policy_json=self.policy()),
                 att.PutPolicyResponse)
            r = self.appraise(ch, "phala-os")
            self.assertTrue(r.allowed, [(c.check, c.detail) for c in r.failed_checks])
            self.assertEqual(r.devices[0].submodule, "cpu0")
            self.assertFalse(r.simulated)
            jwks = json.loads(call(ch, "GetJwks", att.GetJwksRequest(), att.GetJwksResponse)
                              .jwks_json)
        header, payload = verify_es256(r.token, jwks)
        self.assertEqual(header["kid"], r.token_key_id)
        self.assertTrue(payload["pml.allowed"])
        self.assertEqual(payload["submods"]["cpu0"]["tdx_mrtd"], self.td.mrtd.hex())
        self.assertEqual(payload["submods"]["cpu0"]["attester_tcb_status"],
                         self.exp["expected"]["status"])
        self.assertEqual(payload["exp"] - payload["iat"], 300)
        self.assertEqual(payload["pml.policy"]["id"], "phala-os")
        # A changed byte anywhere breaks it.
        head, body, sig = r.token.split(".")
        bad = head + "." + body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
        with self.assertRaises(InvalidSignature):
            verify_es256(bad, jwks)

    def test_3_one_changed_measurement_is_refused_by_name(self):
        rtmr1 = bytearray(self.td.rtmr1)
        rtmr1[0] ^= 1
        p = json.loads(self.policy())
        p["allowed_os"][0]["rtmr1"] = bytes(rtmr1).hex()
        with channel(self.stack, self.svc, role="kms") as ch:
            r = call(ch, "Appraise", att.AppraiseRequest(
                inline_policy_json=json.dumps(p), report_data=self.td.report_data,
                evidence={"tdx_quote": read(os.path.join(VECTORS, MAIN_VECTOR, "quote.bin"))},
                verification_time={"seconds": self.exp["verify_at_unix"]}),
                att.AppraiseResponse)
        self.assertFalse(r.allowed)
        self.assertEqual([c.check for c in r.failed_checks],
                         [att.APPRAISAL_CHECK_POLICY_OS_MEASUREMENTS])
        self.assertEqual(r.status, att.EAR_STATUS_CONTRAINDICATED)
        self.assertTrue(r.policy_id.startswith("inline:"))

    def test_4_rotation_keeps_old_tokens_checkable_and_state_survives_restart(self):
        with channel(self.stack, self.svc) as ch:
            call(ch, "PutPolicy", att.PutPolicyRequest(id="phala-os", policy_json=self.policy()),
                 att.PutPolicyResponse)
            before = self.appraise(ch, "phala-os")
            rot = call(ch, "RotateSigningKey", att.RotateSigningKeyRequest(),
                       att.RotateSigningKeyResponse)
            self.assertEqual(rot.previous_key_id, before.token_key_id)
            self.assertNotEqual(rot.key_id, rot.previous_key_id)
            after = self.appraise(ch, "phala-os")
            self.assertEqual(after.token_key_id, rot.key_id)
            jwks = json.loads(call(ch, "GetJwks", att.GetJwksRequest(), att.GetJwksResponse)
                              .jwks_json)
            verify_es256(before.token, jwks)
            verify_es256(after.token, jwks)
        with channel(self.stack, self.svc, role="viewer") as ch:
            with self.assertRaises(grpc.RpcError) as e:
                call(ch, "RotateSigningKey", att.RotateSigningKeyRequest(),
                     att.RotateSigningKeyResponse)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # Restart on the same state: the policy and the current key are still there.
        self.assertEqual(self.stack.stop("verifier"), 0)
        os.remove(os.path.join(self.stack.dir, "verifier.ready"))
        type(self).svc = self.stack.start("verifier", extra_args=self.args)
        with channel(self.stack, self.svc) as ch:
            again = self.appraise(ch, "phala-os")
            self.assertTrue(again.allowed)
            self.assertEqual(again.token_key_id, rot.key_id)
            self.assertGreaterEqual(again.policy_version, 1)
        for name in ("policies.db", "token-keys"):
            mode = os.stat(os.path.join(self.state, name)).st_mode & 0o777
            self.assertEqual(mode & 0o077, 0, f"{name} is {oct(mode)}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
