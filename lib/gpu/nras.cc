#include "lib/gpu/nras.h"

#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/errors.h"

namespace pml::gpu {
namespace {

absl::Status Malformed(absl::string_view d) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kTokenMalformed, d);
}
absl::Status Refused(absl::string_view cls, absl::string_view d) {
  return MakeError(absl::StatusCode::kFailedPrecondition, cls, d);
}

absl::StatusOr<nlohmann::json> DecodeJsonPart(absl::string_view b64, absl::string_view what) {
  auto bytes = core::Base64UrlDecode(b64);
  if (!bytes.ok())
    return Malformed(absl::StrCat(what, " is not base64url"));
  nlohmann::json j = nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, false);
  if (!j.is_object())
    return Malformed(absl::StrCat(what, " is not a JSON object"));
  return j;
}

absl::StatusOr<int64_t> NumericDate(const nlohmann::json& claims, const char* name,
                                    absl::string_view what) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number_integer()) {
    return Malformed(absl::StrCat(what, " has no integer \"", name, "\""));
  }
  return it->get<int64_t>();
}

// Verifies one compact JWS (ES384) and its common claims; returns the payload.
absl::StatusOr<nlohmann::json> VerifyJwt(absl::string_view jwt, absl::string_view what,
                                         const Jwks& jwks, const Nonce& nonce, absl::Time now,
                                         const NrasVerifyOptions& options) {
  std::vector<absl::string_view> parts = absl::StrSplit(jwt, '.');
  if (parts.size() != 3)
    return Malformed(absl::StrCat(what, " is not a compact JWS"));
  PML_ASSIGN_OR_RETURN(nlohmann::json header,
                       DecodeJsonPart(parts[0], absl::StrCat(what, " header")));
  if (header.value("alg", "") != "ES384") {
    return Refused(error_class::kTokenInvalidSignature, absl::StrCat(what, " alg is not ES384"));
  }
  const std::string kid = header.value("kid", "");
  const EVP_PKEY* key = jwks.Find(kid);
  if (key == nullptr) {
    return Refused(error_class::kTokenUnknownKey,
                   absl::StrCat(what, " kid \"", kid.substr(0, 96), "\" is not in the JWKS"));
  }
  auto sig = core::Base64UrlDecode(parts[2]);
  if (!sig.ok() || sig->size() != 96)
    return Malformed(absl::StrCat(what, " signature is not 96 bytes"));
  const absl::string_view signing_input = jwt.substr(0, parts[0].size() + 1 + parts[1].size());
  if (!crypto::VerifyEcdsaRaw(*key, crypto::Digest::kSha384, core::AsBytes(signing_input), *sig)
           .ok()) {
    return Refused(error_class::kTokenInvalidSignature,
                   absl::StrCat(what, " signature does not verify"));
  }
  PML_ASSIGN_OR_RETURN(nlohmann::json claims,
                       DecodeJsonPart(parts[1], absl::StrCat(what, " payload")));
  if (claims.value("iss", "") != options.issuer) {
    return Refused(error_class::kTokenClaimMismatch,
                   absl::StrCat(what, " iss is not ", options.issuer));
  }
  PML_ASSIGN_OR_RETURN(int64_t exp, NumericDate(claims, "exp", what));
  const int64_t nbf = claims.contains("nbf") && claims["nbf"].is_number_integer()
                          ? claims["nbf"].get<int64_t>()
                          : std::numeric_limits<int64_t>::min();
  if (now > absl::FromUnixSeconds(exp) + options.skew) {
    return Refused(error_class::kTokenExpired, absl::StrCat(what, " expired at ", exp));
  }
  if (nbf != std::numeric_limits<int64_t>::min() &&
      now + options.skew < absl::FromUnixSeconds(nbf)) {
    return Refused(error_class::kTokenExpired, absl::StrCat(what, " is not valid before ", nbf));
  }
  const std::string want = core::HexEncode(nonce);
  const std::string got = claims.value("eat_nonce", "");
  if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0) {
    return Refused(error_class::kTokenClaimMismatch,
                   absl::StrCat(what, " eat_nonce is not the expected nonce"));
  }
  return claims;
}

}  // namespace

absl::StatusOr<std::string> BuildNrasRequest(absl::Span<const DeviceEvidence> evidence,
                                             const Nonce& nonce, Arch arch,
                                             absl::string_view claims_version) {
  if (evidence.empty() || evidence.size() > kMaxEvidenceDevices) {
    return absl::InvalidArgumentError(absl::StrCat("NRAS request needs 1..", kMaxEvidenceDevices,
                                                   " devices, got ", evidence.size()));
  }
  nlohmann::json j;
  j["nonce"] = core::HexEncode(nonce);
  j["arch"] = std::string(ArchName(arch));
  j["claims_version"] = std::string(claims_version);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : evidence) {
    list.push_back({{"evidence", core::Base64Encode(e.report)},
                    {"certificate", core::Base64Encode(core::AsBytes(e.certificate_chain))}});
  }
  j["evidence_list"] = list;
  return j.dump();
}

absl::StatusOr<Jwks> Jwks::Parse(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array()) {
    return Malformed("JWKS has no keys array");
  }
  Jwks out;
  for (const auto& k : j["keys"]) {
    if (!k.is_object() || k.value("kty", "") != "EC" || k.value("crv", "") != "P-384")
      continue;
    const std::string kid = k.value("kid", "");
    if (kid.empty())
      continue;
    crypto::EvpPkeyPtr key;
    if (k.contains("x") && k.contains("y") && k["x"].is_string() && k["y"].is_string()) {
      auto x = core::Base64UrlDecode(k["x"].get<std::string>());
      auto y = core::Base64UrlDecode(k["y"].get<std::string>());
      if (!x.ok() || !y.ok() || x->size() != 48 || y->size() != 48) {
        return Malformed(absl::StrCat("JWKS key ", kid.substr(0, 96), " x/y are not 48 bytes"));
      }
      std::vector<uint8_t> point = *x;
      point.insert(point.end(), y->begin(), y->end());
      auto pk = crypto::PublicKeyFromRawPoint(crypto::Curve::kP384, point);
      if (!pk.ok())
        return Malformed(absl::StrCat("JWKS key ", kid.substr(0, 96), " is not a P-384 point"));
      key = *std::move(pk);
    } else if (k.contains("x5c") && k["x5c"].is_array() && !k["x5c"].empty() &&
               k["x5c"][0].is_string()) {
      auto der = core::Base64Decode(k["x5c"][0].get<std::string>());
      if (!der.ok())
        return Malformed("JWKS x5c is not base64");
      auto cert = crypto::ParseDerCertificate(*der);
      if (!cert.ok())
        return Malformed("JWKS x5c[0] does not parse");
      auto pk = crypto::CertificatePublicKey(**cert);
      if (!pk.ok())
        return Malformed("JWKS x5c[0] key does not decode");
      EVP_PKEY_up_ref(const_cast<EVP_PKEY*>(*pk));
      key.reset(const_cast<EVP_PKEY*>(*pk));
    } else {
      continue;
    }
    out.keys_[kid] = std::move(key);
  }
  return out;
}

const EVP_PKEY* Jwks::Find(absl::string_view kid) const {
  auto it = keys_.find(kid);
  return it == keys_.end() ? nullptr : it->second.get();
}

absl::StatusOr<NrasResult> VerifyNrasResponse(absl::string_view response_json, const Jwks& jwks,
                                              const Nonce& nonce, absl::Time now,
                                              const NrasVerifyOptions& options) {
  nlohmann::json j = nlohmann::json::parse(response_json, nullptr, false);
  if (!j.is_array() || j.size() != 2 || !j[0].is_array() || j[0].size() != 2 || j[0][0] != "JWT" ||
      !j[0][1].is_string() || !j[1].is_object()) {
    return Malformed("response is not [[\"JWT\", token], {device: token}]");
  }
  NrasResult out;
  PML_ASSIGN_OR_RETURN(out.overall_claims, VerifyJwt(j[0][1].get<std::string>(), "overall token",
                                                     jwks, nonce, now, options));
  auto submods = out.overall_claims.find("submods");
  if (submods == out.overall_claims.end() || !submods->is_object()) {
    return Malformed("overall token has no submods object");
  }
  if (submods->size() != j[1].size()) {
    return Refused(error_class::kTokenClaimMismatch,
                   absl::StrCat("overall token names ", submods->size(), " devices, response has ",
                                j[1].size()));
  }
  for (const auto& [name, sub] : submods->items()) {
    auto detached = j[1].find(name);
    if (detached == j[1].end() || !detached->is_string()) {
      return Refused(error_class::kTokenClaimMismatch,
                     absl::StrCat("no detached token for ", name.substr(0, 32)));
    }
    // ["DIGEST", ["SHA-256", hex]]
    if (!sub.is_array() || sub.size() != 2 || sub[0] != "DIGEST" || !sub[1].is_array() ||
        sub[1].size() != 2 || sub[1][0] != "SHA-256" || !sub[1][1].is_string()) {
      return Malformed(absl::StrCat("submods ", name.substr(0, 32), " is not a SHA-256 DIGEST"));
    }
    const std::string token = detached->get<std::string>();
    const std::string digest = core::HexEncode(crypto::Sha256(token));
    if (digest != sub[1][1].get<std::string>()) {
      return Refused(error_class::kTokenClaimMismatch,
                     absl::StrCat("detached token ", name.substr(0, 32),
                                  " does not match its submods digest"));
    }
    PML_ASSIGN_OR_RETURN(
        nlohmann::json claims,
        VerifyJwt(token, absl::StrCat("token ", name.substr(0, 32)), jwks, nonce, now, options));
    out.device_claims[name] = std::move(claims);
  }
  auto result = out.overall_claims.find("x-nvidia-overall-att-result");
  out.overall_result =
      result != out.overall_claims.end() && result->is_boolean() && result->get<bool>();
  return out;
}

}  // namespace pml::gpu
