// libFuzzer target for the JWK Set and JWT parsers (lib/crypto/jwt.h). Nothing may crash, leak or
// read out of bounds; where the header documents a result, the target traps when it differs.
// The first byte selects what the rest is (seeds spell it as an ASCII digit, '0'..'3'):
//   bits 0-1  0: a JWK Set: JwkSet::ParseText(rest); on success ToJson() must parse back to the
//                same set (kids, algs, curves, points).
//             1: a compact token: VerifyJwt(rest) against a fixed set of two keys (kids
//                "fuzz-p256", "fuzz-p384"; P-256 and P-384 keys from fixed scalars, so seeds can
//                carry valid signatures). An OK result must name a key of the set and an alg
//                that matches it.
//             2: a JSON object: signed with SignJwt (the fixed P-256 key, or P-384 with bit 3)
//                and verified back. Signing succeeds unless the token would be too large; the
//                signature always verifies (never kUnauthenticated), so the claim checks run on
//                fuzzer-chosen claims: kInvalidArgument exactly when exp/nbf/iat is not a
//                number or exp is required and missing, else OK or kFailedPrecondition; an OK
//                result carries the payload unchanged.
//             3: "<JWK Set>\n<token>": VerifyJwt(token) against the set parsed from the first
//                line (the NRAS seed verifies in full: `now` lies inside its validity).
//   bit 2     lax options: no issuer required and exp optional (default: exp required, issuer
//             "pml-fuzz" in modes 1-2, NRAS's in mode 3).
// Options fix `now` (2026-09-16T20:53:20Z) and allow ES256 and ES384.
// Seeds: fuzz/seeds/jwt/ (mode digit first), plus the NRAS JWKS and EAT from the shared vectors
// (scripts/fuzz.sh builds those):
//   jwt_fuzz -max_total_time=60 corpus/ fuzz/seeds/jwt/
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/jwt.h"
#include "lib/crypto/key.h"

namespace {

using pml::crypto::Jwk;
using pml::crypto::JwkSet;
using pml::crypto::VerifyJwtOptions;

constexpr char kFixedIssuer[] = "pml-fuzz";
constexpr char kNrasIssuer[] = "https://nras.attestation.nvidia.com";
constexpr int64_t kNowUnix = 1789592000;

// The fixed signing keys and the set of their public halves, built once.
struct FixedKeys {
  pml::crypto::EvpPkeyPtr p256;
  pml::crypto::EvpPkeyPtr p384;
  JwkSet set;
};

pml::crypto::EvpPkeyPtr KeyFromFixedScalar(pml::crypto::Curve curve, size_t size, uint8_t fill) {
  std::array<uint8_t, 48> scalar{};
  scalar.fill(fill);
  auto key = pml::crypto::PrivateKeyFromScalar(curve, absl::MakeConstSpan(scalar.data(), size));
  if (!key.ok()) {
    __builtin_trap();
  }
  return *std::move(key);
}

const FixedKeys& Keys() {
  static const FixedKeys* const keys = [] {
    auto* k = new FixedKeys;
    k->p256 = KeyFromFixedScalar(pml::crypto::Curve::kP256, 32, 0x11);
    k->p384 = KeyFromFixedScalar(pml::crypto::Curve::kP384, 48, 0x22);
    auto a = Jwk::FromPublicKey(*k->p256, "fuzz-p256");
    auto b = Jwk::FromPublicKey(*k->p384, "fuzz-p384");
    if (!a.ok() || !b.ok() || !k->set.Add(*std::move(a)).ok() || !k->set.Add(*std::move(b)).ok()) {
      __builtin_trap();
    }
    return k;
  }();
  return *keys;
}

VerifyJwtOptions Options(bool lax, const char* issuer) {
  VerifyJwtOptions o;
  o.now = absl::FromUnixSeconds(kNowUnix);
  o.allowed_algs = {"ES256", "ES384"};
  o.require_exp = !lax;
  o.issuer = lax ? "" : issuer;
  return o;
}

// An OK verification must name a key of `set` whose alg is the token's.
void CheckVerified(const pml::crypto::VerifiedJwt& v, const JwkSet& set) {
  const auto alg = v.header.find("alg");
  const auto kid = v.header.find("kid");
  if (!v.header.is_object() || !v.payload.is_object() || alg == v.header.end() ||
      kid == v.header.end() || !alg->is_string() || !kid->is_string()) {
    __builtin_trap();
  }
  const Jwk* jwk = set.Find(kid->get<std::string>());
  if (jwk == nullptr || jwk->alg != alg->get<std::string>()) {
    __builtin_trap();
  }
}

void FuzzJwks(absl::string_view text) {
  auto set = JwkSet::ParseText(text);
  if (!set.ok()) {
    return;
  }
  auto again = JwkSet::Parse(set->ToJson());
  if (!again.ok() || again->size() != set->size() || again->ToJson() != set->ToJson()) {
    __builtin_trap();
  }
}

void FuzzVerify(absl::string_view token, const JwkSet& set, const VerifyJwtOptions& options) {
  auto verified = pml::crypto::VerifyJwt(token, set, options);
  if (verified.ok()) {
    CheckVerified(*verified, set);
  }
}

// A claim VerifyJwt reads as a NumericDate that is present but not a number.
bool BadDate(const nlohmann::json& payload, const char* name) {
  const auto it = payload.find(name);
  return it != payload.end() && !it->is_number();
}

void FuzzSignVerify(absl::string_view text, bool lax, bool p384) {
  // Parse as VerifyJwt would accept it back: no deeper than kMaxJwtJsonDepth (the discarded
  // subtree keeps the tree shallow).
  bool too_deep = false;
  const nlohmann::json::parser_callback_t depth_guard =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
        if ((event == nlohmann::json::parse_event_t::object_start ||
             event == nlohmann::json::parse_event_t::array_start) &&
            depth >= pml::crypto::kMaxJwtJsonDepth) {
          too_deep = true;
          return false;
        }
        return true;
      };
  const nlohmann::json payload =
      nlohmann::json::parse(text.begin(), text.end(), depth_guard, /*allow_exceptions=*/false);
  if (too_deep || !payload.is_object()) {
    return;
  }

  const FixedKeys& keys = Keys();
  const char* kid = p384 ? "fuzz-p384" : "fuzz-p256";
  auto token = pml::crypto::SignJwt({{"kid", kid}}, payload, p384 ? *keys.p384 : *keys.p256);
  if (!token.ok()) {
    // Only the size limit can refuse a parsed (hence UTF-8) object of bounded depth.
    if (token.status().code() != absl::StatusCode::kInvalidArgument) {
      __builtin_trap();
    }
    return;
  }
  const VerifyJwtOptions options = Options(lax, kFixedIssuer);
  auto verified = pml::crypto::VerifyJwt(*token, keys.set, options);
  const bool want_invalid = (options.require_exp && !payload.contains("exp")) ||
                            BadDate(payload, "exp") || BadDate(payload, "nbf") ||
                            BadDate(payload, "iat");
  const absl::StatusCode code = verified.status().code();
  if (want_invalid) {
    if (code != absl::StatusCode::kInvalidArgument) {
      __builtin_trap();
    }
    return;
  }
  if (code != absl::StatusCode::kOk && code != absl::StatusCode::kFailedPrecondition) {
    __builtin_trap();
  }
  if (!verified.ok()) {
    return;
  }
  CheckVerified(*verified, keys.set);
  if (verified->payload != payload || verified->header.value("kid", "") != kid ||
      verified->header.value("typ", "") != "JWT") {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const uint8_t selector = data[0];
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool lax = (selector & 4) != 0;
  switch (selector & 3) {
    case 0:
      FuzzJwks(rest);
      break;
    case 1:
      FuzzVerify(rest, Keys().set, Options(lax, kFixedIssuer));
      break;
    case 2:
      FuzzSignVerify(rest, lax, (selector & 8) != 0);
      break;
    default: {
      const size_t newline = rest.find('\n');
      if (newline == absl::string_view::npos) {
        return 0;
      }
      auto set = JwkSet::ParseText(rest.substr(0, newline));
      if (!set.ok()) {
        return 0;
      }
      FuzzVerify(rest.substr(newline + 1), *set, Options(lax, kNrasIssuer));
      break;
    }
  }
  return 0;
}
