#include "lib/crypto/jwt.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/core/hex.h"
#include "lib/core/json_depth.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {
namespace {

// The algorithms this library implements (RFC 7518 §3.1 names, §6.2.1.1 curve names).
struct AlgInfo {
  const char* alg;
  const char* crv;
  Curve curve;
  size_t field_bytes;  // size of x, y, r and s (RFC 7518 §3.4, §6.2.1.2)
  Digest digest;
};

constexpr AlgInfo kAlgs[] = {
    {"ES256", "P-256", Curve::kP256, 32, Digest::kSha256},
    {"ES384", "P-384", Curve::kP384, 48, Digest::kSha384},
};

const AlgInfo* AlgByName(absl::string_view alg) {
  for (const AlgInfo& a : kAlgs) {
    if (alg == a.alg) {
      return &a;
    }
  }
  return nullptr;
}

const AlgInfo* AlgByCrv(absl::string_view crv) {
  for (const AlgInfo& a : kAlgs) {
    if (crv == a.crv) {
      return &a;
    }
  }
  return nullptr;
}

// Untrusted text in an error message: bounded and escaped.
std::string Quoted(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, 64)), s.size() > 64 ? "...\"" : "\"");
}

absl::StatusOr<const AlgInfo*> AlgForKey(const EVP_PKEY& key) {
  if (EVP_PKEY_get_base_id(&key) != EVP_PKEY_EC) {
    return absl::InvalidArgumentError("jws key is not an EC key");
  }
  char group[64] = {};
  size_t len = 0;
  ClearOpensslErrors();
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &len) != 1) {
    return OpensslError("jws key has no named curve", absl::StatusCode::kInvalidArgument);
  }
  const absl::string_view name(group, len);
  if (name == "prime256v1" || name == "P-256") {
    return &kAlgs[0];
  }
  if (name == "secp384r1" || name == "P-384") {
    return &kAlgs[1];
  }
  return absl::InvalidArgumentError(
      absl::StrCat("jws key curve ", name, " is not supported (want P-256 or P-384)"));
}

// The affine coordinates of an EC public key, each exactly field_bytes long.
absl::Status PublicXY(const EVP_PKEY& key, const AlgInfo& info, std::string* x, std::string* y) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> point, PublicKeyToRawPoint(key));
  const size_t n = info.field_bytes;
  if (point.size() != 1 + 2 * n || point[0] != 0x04) {
    return absl::InternalError(
        absl::StrCat("ec public point has ", point.size(), " bytes, want ", 1 + 2 * n));
  }
  *x = core::Base64UrlEncode(absl::MakeConstSpan(point).subspan(1, n));
  *y = core::Base64UrlEncode(absl::MakeConstSpan(point).subspan(1 + n, n));
  return absl::OkStatus();
}

std::string ThumbprintOf(const AlgInfo& info, absl::string_view x, absl::string_view y) {
  // RFC 7638 §3.2: the required members only, sorted by name, no whitespace. x and y are
  // base64url, so they need no JSON escaping.
  const std::string canonical =
      absl::StrCat(R"({"crv":")", info.crv, R"(","kty":"EC","x":")", x, R"(","y":")", y, R"("})");
  return core::Base64UrlEncode(Sha256(canonical));
}

// Decodes base64url and insists on the one canonical spelling: core::Base64UrlDecode accepts
// non-zero trailing bits, which would let a token be altered without changing what it decodes to.
absl::StatusOr<std::vector<uint8_t>> DecodeCanonical(absl::string_view text,
                                                     absl::string_view what) {
  auto bytes = core::Base64UrlDecode(text);
  if (!bytes.ok() || core::Base64UrlEncode(*bytes) != text) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not canonical base64url"));
  }
  return bytes;
}

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view text, absl::string_view what) {
  if (!core::JsonDepthWithin(text, kMaxJwtJsonDepth)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " nests deeper than ", kMaxJwtJsonDepth, " levels"));
  }
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  }
  return j;
}

// nlohmann's dump() throws on strings that are not UTF-8; our code throws nothing.
absl::StatusOr<std::string> Dump(const nlohmann::json& j, absl::string_view what) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains a string that is not UTF-8"));
  }
}

// A NumericDate claim (RFC 7519 §2: seconds since the epoch, possibly fractional), if present.
absl::StatusOr<std::optional<absl::Time>> NumericDate(const nlohmann::json& claims,
                                                      const char* name) {
  const auto it = claims.find(name);
  if (it == claims.end()) {
    return std::optional<absl::Time>();
  }
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("token ", name, " is not a number"));
  }
  if (it->is_number_float()) {
    return std::optional<absl::Time>(absl::UnixEpoch() + absl::Seconds(it->get<double>()));
  }
  if (it->is_number_unsigned()) {
    // Anything beyond int64 seconds is, for our purposes, forever.
    const uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) {
      return std::optional<absl::Time>(absl::InfiniteFuture());
    }
    return std::optional<absl::Time>(absl::FromUnixSeconds(static_cast<int64_t>(v)));
  }
  return std::optional<absl::Time>(absl::FromUnixSeconds(it->get<int64_t>()));
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

const std::string* StringMember(const nlohmann::json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return nullptr;
  }
  return it->get_ptr<const std::string*>();
}

absl::StatusOr<Jwk> ParseOneJwk(const nlohmann::json& k, size_t index, bool* skip) {
  *skip = false;
  const std::string where = absl::StrCat("jwks key ", index);
  if (!k.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
  }
  const std::string* kty = StringMember(k, "kty");
  if (kty == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no string kty"));
  }
  if (*kty != "EC") {
    *skip = true;
    return Jwk{};
  }
  if (k.contains("use")) {
    const std::string* use = StringMember(k, "use");
    if (use == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, " use is not a string"));
    }
    if (*use != "sig") {
      *skip = true;
      return Jwk{};
    }
  }
  const std::string* crv = StringMember(k, "crv");
  if (crv == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no string crv"));
  }
  const AlgInfo* info = AlgByCrv(*crv);
  if (info == nullptr) {
    *skip = true;
    return Jwk{};
  }
  if (k.contains("d")) {
    return absl::InvalidArgumentError(absl::StrCat(where, " carries a private member d"));
  }
  const std::string* x = StringMember(k, "x");
  const std::string* y = StringMember(k, "y");
  if (x == nullptr || y == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no string x and y"));
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> xb, DecodeCanonical(*x, absl::StrCat(where, " x")));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> yb, DecodeCanonical(*y, absl::StrCat(where, " y")));
  if (xb.size() != info->field_bytes || yb.size() != info->field_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, " x/y are ", xb.size(), "/", yb.size(),
                                                   " bytes, want ", info->field_bytes));
  }
  if (k.contains("alg")) {
    const std::string* alg = StringMember(k, "alg");
    if (alg == nullptr || *alg != info->alg) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " alg does not match crv ", info->crv, " (want ", info->alg, ")"));
    }
  }
  std::vector<uint8_t> point = std::move(xb);
  point.insert(point.end(), yb.begin(), yb.end());
  auto key = PublicKeyFromRawPoint(info->curve, point);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not a ", info->crv, " point"));
  }
  Jwk out;
  out.alg = info->alg;
  out.crv = info->crv;
  out.key = *std::move(key);
  if (k.contains("kid")) {
    const std::string* kid = StringMember(k, "kid");
    if (kid == nullptr || kid->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " kid is not a non-empty string"));
    }
    out.kid = *kid;
  } else {
    out.kid = ThumbprintOf(*info, *x, *y);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> JwsAlgForKey(const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(const AlgInfo* info, AlgForKey(key));
  return std::string(info->alg);
}

absl::StatusOr<std::string> JwkThumbprint(const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(const AlgInfo* info, AlgForKey(key));
  std::string x, y;
  PML_RETURN_IF_ERROR(PublicXY(key, *info, &x, &y));
  return ThumbprintOf(*info, x, y);
}

absl::StatusOr<std::string> SignJwt(const nlohmann::json& header_extra,
                                    const nlohmann::json& payload, const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(const AlgInfo* info, AlgForKey(key));
  if (!payload.is_object()) {
    return absl::InvalidArgumentError("jwt payload is not a JSON object");
  }
  if (!header_extra.is_null() && !header_extra.is_object()) {
    return absl::InvalidArgumentError("jwt header_extra is not a JSON object");
  }
  nlohmann::json header = {{"alg", info->alg}, {"typ", "JWT"}};
  if (header_extra.is_object()) {
    for (const auto& [name, value] : header_extra.items()) {
      if (name == "alg") {
        if (value != info->alg) {
          return absl::InvalidArgumentError(
              absl::StrCat("jwt header alg does not match the key (want ", info->alg, ")"));
        }
        continue;
      }
      if (name == "crit") {
        return absl::InvalidArgumentError("jwt header crit is not supported");
      }
      header[name] = value;
    }
  }
  PML_ASSIGN_OR_RETURN(std::string header_json, Dump(header, "jwt header"));
  PML_ASSIGN_OR_RETURN(std::string payload_json, Dump(payload, "jwt payload"));
  std::string token =
      absl::StrCat(core::Base64UrlEncode(header_json), ".", core::Base64UrlEncode(payload_json));
  // base64url of 2n bytes is ceil(8n/3) characters.
  const size_t final_size = token.size() + 1 + (8 * info->field_bytes + 2) / 3;
  if (final_size > kMaxJwtBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("jwt would be ", final_size, " bytes, limit ", kMaxJwtBytes));
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig,
                       SignEcdsaRaw(key, info->digest, core::AsBytes(token), info->field_bytes));
  absl::StrAppend(&token, ".", core::Base64UrlEncode(sig));
  return token;
}

absl::StatusOr<Jwk> Jwk::FromPublicKey(const EVP_PKEY& key, absl::string_view kid) {
  PML_ASSIGN_OR_RETURN(const AlgInfo* info, AlgForKey(key));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> point, PublicKeyToRawPoint(key));
  Jwk out;
  // Re-import the point so the Jwk can never hold private material.
  PML_ASSIGN_OR_RETURN(out.key, PublicKeyFromRawPoint(info->curve, point));
  out.alg = info->alg;
  out.crv = info->crv;
  if (kid.empty()) {
    PML_ASSIGN_OR_RETURN(out.kid, JwkThumbprint(*out.key));
  } else {
    out.kid.assign(kid.data(), kid.size());
  }
  return out;
}

nlohmann::json Jwk::ToJson() const {
  PML_CHECK(key != nullptr);
  const AlgInfo* info = AlgByCrv(crv);
  PML_CHECK(info != nullptr);
  std::string x, y;
  // The key was imported from a point of this curve, so re-exporting it cannot fail.
  PML_CHECK(PublicXY(*key, *info, &x, &y).ok());
  return {{"kty", "EC"}, {"crv", crv}, {"x", x},      {"y", y},
          {"kid", kid},  {"alg", alg}, {"use", "sig"}};
}

absl::StatusOr<JwkSet> JwkSet::Parse(const nlohmann::json& jwks) {
  if (!jwks.is_object()) {
    return absl::InvalidArgumentError("jwks is not a JSON object");
  }
  const auto it = jwks.find("keys");
  if (it == jwks.end() || !it->is_array()) {
    return absl::InvalidArgumentError("jwks has no keys array");
  }
  JwkSet out;
  for (size_t i = 0; i < it->size(); ++i) {
    bool skip = false;
    PML_ASSIGN_OR_RETURN(Jwk jwk, ParseOneJwk((*it)[i], i, &skip));
    if (skip) {
      continue;
    }
    if (out.Find(jwk.kid) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("jwks key ", i, " repeats kid ", Quoted(jwk.kid)));
    }
    out.keys_.push_back(std::move(jwk));
  }
  return out;
}

absl::StatusOr<JwkSet> JwkSet::ParseText(absl::string_view jwks_json) {
  PML_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonObject(jwks_json, "jwks"));
  return Parse(j);
}

absl::Status JwkSet::Add(Jwk jwk) {
  if (jwk.key == nullptr || jwk.kid.empty() || AlgByCrv(jwk.crv) == nullptr) {
    return absl::InvalidArgumentError("jwk has no key, kid or supported crv");
  }
  if (Find(jwk.kid) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("jwk kid ", Quoted(jwk.kid), " already present"));
  }
  keys_.push_back(std::move(jwk));
  return absl::OkStatus();
}

nlohmann::json JwkSet::ToJson() const {
  nlohmann::json keys = nlohmann::json::array();
  for (const Jwk& k : keys_) {
    keys.push_back(k.ToJson());
  }
  return {{"keys", std::move(keys)}};
}

const Jwk* JwkSet::Find(absl::string_view kid) const {
  const auto it =
      std::find_if(keys_.begin(), keys_.end(), [kid](const Jwk& k) { return k.kid == kid; });
  return it == keys_.end() ? nullptr : &*it;
}

absl::StatusOr<VerifiedJwt> VerifyJwt(absl::string_view token, const JwkSet& keys,
                                      const VerifyJwtOptions& options) {
  if (token.size() > kMaxJwtBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("token is ", token.size(), " bytes, limit ", kMaxJwtBytes));
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  // An empty signature is let through to be refused below with the reason ("none" tokens end
  // in '.', and the alg check names that).
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) {
    return absl::InvalidArgumentError("token is not a compact jws (header.payload.signature)");
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> header_bytes,
                       DecodeCanonical(parts[0], "token header"));
  PML_ASSIGN_OR_RETURN(nlohmann::json header,
                       ParseJsonObject(core::ToString(header_bytes), "token header"));

  const std::string* alg = StringMember(header, "alg");
  if (alg == nullptr) {
    return absl::InvalidArgumentError("token header has no string alg");
  }
  const AlgInfo* info = AlgByName(*alg);
  const bool listed = std::find(options.allowed_algs.begin(), options.allowed_algs.end(), *alg) !=
                      options.allowed_algs.end();
  if (info == nullptr || !listed) {
    return absl::UnauthenticatedError(absl::StrCat("token alg ", Quoted(*alg), " is not allowed"));
  }
  // RFC 7515 §4.1.11: extensions we do not understand must be refused; we understand none.
  if (header.contains("crit")) {
    return absl::InvalidArgumentError("token header crit is not supported");
  }

  if (!header.contains("kid")) {
    return absl::UnauthenticatedError("token header has no kid");
  }
  const std::string* kid = StringMember(header, "kid");
  if (kid == nullptr) {
    return absl::InvalidArgumentError("token header kid is not a string");
  }
  const Jwk* jwk = keys.Find(*kid);
  if (jwk == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("token kid ", Quoted(*kid), " is not a known key"));
  }
  if (jwk->alg != info->alg) {
    return absl::UnauthenticatedError(absl::StrCat("token alg ", info->alg, " does not match key ",
                                                   Quoted(*kid), " (", jwk->alg, ")"));
  }

  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig, DecodeCanonical(parts[2], "token signature"));
  if (sig.size() != 2 * info->field_bytes) {
    return absl::UnauthenticatedError(
        absl::StrCat("token signature is ", sig.size(), " bytes, want ", 2 * info->field_bytes));
  }
  const absl::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
  const absl::Status verified =
      VerifyEcdsaRaw(*jwk->key, info->digest, core::AsBytes(signing_input), sig);
  if (!verified.ok()) {
    if (verified.code() == absl::StatusCode::kInternal) {
      return verified;
    }
    return absl::UnauthenticatedError("token signature does not verify");
  }

  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> payload_bytes,
                       DecodeCanonical(parts[1], "token payload"));
  PML_ASSIGN_OR_RETURN(nlohmann::json payload,
                       ParseJsonObject(core::ToString(payload_bytes), "token payload"));

  PML_ASSIGN_OR_RETURN(std::optional<absl::Time> exp, NumericDate(payload, "exp"));
  PML_ASSIGN_OR_RETURN(std::optional<absl::Time> nbf, NumericDate(payload, "nbf"));
  PML_ASSIGN_OR_RETURN(std::optional<absl::Time> iat, NumericDate(payload, "iat"));
  if (!exp.has_value() && options.require_exp) {
    return absl::InvalidArgumentError("token has no exp");
  }
  // RFC 7519 §4.1.4: the current time must be before exp.
  if (exp.has_value() && options.now >= *exp + options.leeway) {
    return absl::FailedPreconditionError(absl::StrCat("token expired at ", Rfc3339(*exp)));
  }
  if (nbf.has_value() && options.now + options.leeway < *nbf) {
    return absl::FailedPreconditionError(
        absl::StrCat("token not yet valid: nbf is ", Rfc3339(*nbf)));
  }
  if (iat.has_value() && *iat > options.now + options.leeway) {
    return absl::FailedPreconditionError(
        absl::StrCat("token not yet valid: iat ", Rfc3339(*iat), " is in the future"));
  }
  if (!options.issuer.empty()) {
    const std::string* iss = StringMember(payload, "iss");
    if (iss == nullptr || *iss != options.issuer) {
      return absl::FailedPreconditionError(absl::StrCat("token iss ",
                                                        iss == nullptr ? "(none)" : Quoted(*iss),
                                                        " is not ", Quoted(options.issuer)));
    }
  }
  return VerifiedJwt{std::move(header), std::move(payload)};
}

}  // namespace pml::crypto
