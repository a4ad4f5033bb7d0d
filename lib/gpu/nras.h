#pragma once
// NVIDIA Remote Attestation Service (NRAS) support without network I/O (spec §7): building the
// request body from collected evidence, and verifying NRAS's answer — an overall EAT JWT plus one
// detached JWT per device — against JWKS keys the caller supplies (fetched and archived
// elsewhere; NRAS's x5c roots are not published, so keys are trusted as given, as NVAT does).
//
// Token verification (NVAT validate_and_decode_EAT): the overall JWT and every detached JWT are
// ES384 JWS signed by a JWKS key named by their "kid"; "iss" is the expected issuer; nbf/exp hold
// at `now` (± skew); the overall "submods" names exactly the detached tokens, each as
// ["DIGEST",["SHA-256", hex(SHA-256(detached JWT text))]]; "eat_nonce" (lower-case hex) equals
// the caller's nonce in the overall token and in every detached token.
//
// Thread-safety: all functions are pure; Jwks is immutable after parsing.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/report.h"

namespace pml::gpu {

inline constexpr absl::string_view kNrasIssuer = "https://nras.attestation.nvidia.com";

// The NRAS /v3|v4/attest/gpu request body: {"nonce","arch","claims_version","evidence_list":[
// {"evidence": base64(report), "certificate": base64(PEM chain)}]}. kInvalidArgument when
// `evidence` is empty or larger than kMaxEvidenceDevices.
absl::StatusOr<std::string> BuildNrasRequest(absl::Span<const DeviceEvidence> evidence,
                                             const Nonce& nonce, Arch arch,
                                             absl::string_view claims_version = "2.0");

// Signing keys from a JWKS document ({"keys":[{kty:"EC",crv:"P-384",kid,x,y[,x5c]}]}). Keys of
// other types are skipped; a key without x/y uses its x5c[0] certificate's key.
class Jwks {
 public:
  // kInvalidArgument "NRAS_TOKEN_MALFORMED: ..." on bad JSON or a malformed P-384 key.
  static absl::StatusOr<Jwks> Parse(absl::string_view json);
  // The key for `kid`, or nullptr.
  const EVP_PKEY* Find(absl::string_view kid) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, crypto::EvpPkeyPtr, std::less<>> keys_;
};

struct NrasVerifyOptions {
  std::string issuer = std::string(kNrasIssuer);
  absl::Duration skew = absl::Minutes(5);
};

struct NrasResult {
  bool overall_result = false;                          // x-nvidia-overall-att-result
  nlohmann::json overall_claims;                        // payload of the overall JWT
  std::map<std::string, nlohmann::json> device_claims;  // "GPU-0" -> payload
};

// Verifies an NRAS response body ([["JWT", overall], {"GPU-0": jwt, ...}]) as described above.
//   kInvalidArgument "NRAS_TOKEN_MALFORMED: ..."       not the expected JSON / JWS shape
//   kFailedPrecondition "NRAS_TOKEN_UNKNOWN_KEY: ..."  a kid not in `jwks`
//   kFailedPrecondition "NRAS_TOKEN_INVALID_SIGNATURE: ..."  a JWS signature or alg is wrong
//   kFailedPrecondition "NRAS_TOKEN_EXPIRED: ..."      outside nbf..exp at `now`
//   kFailedPrecondition "NRAS_TOKEN_CLAIM_MISMATCH: ..."  issuer, nonce, or submods link
// A false overall result is a result, not an error.
absl::StatusOr<NrasResult> VerifyNrasResponse(absl::string_view response_json, const Jwks& jwks,
                                              const Nonce& nonce, absl::Time now,
                                              const NrasVerifyOptions& options = {});

}  // namespace pml::gpu
