#pragma once
// Compact JWS / JWT (RFC 7515, RFC 7519) with ECDSA keys only: ES256 (P-256, SHA-256) and ES384
// (P-384, SHA-384), signatures as raw r||s (RFC 7518 §3.4). Public keys travel as EC JWKs
// (RFC 7517, RFC 7518 §6.2) in a JWK Set; a key's default kid is its RFC 7638 thumbprint.
//
// Verification is deliberately narrow: the token's alg must be in an allow-list and match the
// key its kid names, so "none", HMAC and RSA tokens (and alg/key confusion) are refused before
// any signature is computed. Nothing here holds or compares secrets.
//
// Thread-safety: every function is pure and thread-safe. A JwkSet is immutable once built and may
// be shared read-only across threads; Add() needs exclusive access.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {

// Largest compact token VerifyJwt accepts.
inline constexpr size_t kMaxJwtBytes = 64 * 1024;
// Deepest JSON nesting accepted in a token header or payload, and in a JWK Set.
inline constexpr int kMaxJwtJsonDepth = 32;

// The JWS alg for an EC key: "ES256" for P-256, "ES384" for P-384. kInvalidArgument for any other
// key type or curve (secp256k1 included: its JWS name, ES256K, is not supported here).
absl::StatusOr<std::string> JwsAlgForKey(const EVP_PKEY& key);

// RFC 7638 thumbprint of an EC public key (P-256 or P-384): base64url (no padding) of SHA-256 over
// the canonical JSON {"crv":..,"kty":"EC","x":..,"y":..} (members sorted, no whitespace, x and y
// zero-padded to the field size). kInvalidArgument for an unsupported key.
absl::StatusOr<std::string> JwkThumbprint(const EVP_PKEY& key);

// Signs `payload` (a JSON object) as a compact JWS with `key` (a P-256 or P-384 private key). The
// protected header is {"alg": JwsAlgForKey(key), "typ": "JWT"} plus the members of
// `header_extra` (an object, or null for none), typically "kid"; `header_extra` may override
// "typ" but not set "alg" to anything else, nor "crit" (which VerifyJwt refuses).
// kInvalidArgument when `payload` is not an object, `header_extra` is not an object or null, it
// sets a forbidden member, a JSON string is not valid UTF-8, or the key is unsupported; kInternal
// when OpenSSL fails.
absl::StatusOr<std::string> SignJwt(const nlohmann::json& header_extra,
                                    const nlohmann::json& payload, const EVP_PKEY& key);

// One EC public key of a JWK Set: P-256 or P-384, for signatures.
struct Jwk {
  // Builds the JWK of the public half of `key` (a private key is fine; only its public half is
  // kept). `kid` defaults to JwkThumbprint(key); alg is JwsAlgForKey(key). kInvalidArgument for an
  // unsupported key.
  static absl::StatusOr<Jwk> FromPublicKey(const EVP_PKEY& key, absl::string_view kid = "");

  // {"kty":"EC","crv","x","y","kid","alg","use":"sig"}. Never includes private members.
  nlohmann::json ToJson() const;

  std::string kid;
  std::string alg;  // "ES256" or "ES384"
  std::string crv;  // "P-256" or "P-384"
  EvpPkeyPtr key;   // public key only, never null in a Jwk made by this library
};

// An ordered set of EC JWKs with unique kids.
class JwkSet {
 public:
  JwkSet() = default;
  JwkSet(JwkSet&&) = default;
  JwkSet& operator=(JwkSet&&) = default;

  // Parses {"keys": [...]}. Keys with a "kty" other than "EC", an EC curve other than P-256/P-384,
  // or a "use" other than "sig" are skipped (they are valid JWKs this library cannot use). Every
  // other key must be well-formed: kInvalidArgument (naming the key's index and field) when the
  // set is not an object with a "keys" array, a member has the wrong type, x or y is not canonical
  // base64url of exactly the field size, the point is not on the curve, "alg" disagrees with the
  // curve, a private member ("d") is present, or two keys share a kid. A key without a "kid" gets
  // its thumbprint.
  static absl::StatusOr<JwkSet> Parse(const nlohmann::json& jwks);
  // The same from JSON text; also kInvalidArgument when it is not JSON or nests deeper than
  // kMaxJwtJsonDepth.
  static absl::StatusOr<JwkSet> ParseText(absl::string_view jwks_json);

  // Adds `jwk`. kAlreadyExists when its kid is taken; kInvalidArgument when it has no key or kid.
  absl::Status Add(Jwk jwk);

  // {"keys": [...]} in insertion order.
  nlohmann::json ToJson() const;

  // The key named `kid`, or nullptr. The pointer lives as long as this set is not modified.
  const Jwk* Find(absl::string_view kid) const;

  const std::vector<Jwk>& keys() const { return keys_; }
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }

 private:
  std::vector<Jwk> keys_;
};

struct VerifyJwtOptions {
  // The verification time. Callers must set it (from a core::Clock); the default is the epoch.
  absl::Time now;
  // Tolerated clock skew for exp, nbf and iat.
  absl::Duration leeway = absl::Seconds(60);
  // Accepted algs. Only "ES256" and "ES384" can ever verify; anything else listed is ignored.
  std::vector<std::string> allowed_algs = {"ES256"};
  // When non-empty, the payload's "iss" must equal it.
  std::string issuer;
  // When true, a token without "exp" is refused.
  bool require_exp = true;
};

struct VerifiedJwt {
  nlohmann::json header;   // the protected header (an object)
  nlohmann::json payload;  // the claims (an object)
};

// Verifies a compact JWS signed by a key of `keys` and checks its time claims. In order:
//   kInvalidArgument: token larger than kMaxJwtBytes, not three '.'-separated parts, a part that
//     is not canonical base64url, a header or payload that is not a JSON object (or nests deeper
//     than kMaxJwtJsonDepth), "alg"/"kid" not strings, a "crit" header, a non-numeric exp/nbf/iat,
//     or a missing exp when options.require_exp.
//   kUnauthenticated: alg "none", HS*, RS* or otherwise not in options.allowed_algs; no kid or a
//     kid not in `keys`; alg not matching the key's curve; a signature of the wrong length or one
//     that does not verify.
//   kFailedPrecondition: "token expired" (now >= exp + leeway), "token not yet valid"
//     (now + leeway < nbf, or iat > now + leeway), or iss differing from options.issuer.
// The payload is decoded only after the signature verifies.
absl::StatusOr<VerifiedJwt> VerifyJwt(absl::string_view token, const JwkSet& keys,
                                      const VerifyJwtOptions& options);

}  // namespace pml::crypto
