#include "tools/pmlctl/token_cmd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/crypto/jwt.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

using Json = nlohmann::json;

// A token file may end in a newline or carry indentation; nothing bigger than a token is read.
constexpr size_t kMaxTokenFileBytes = crypto::kMaxJwtBytes + 4096;
constexpr size_t kMaxJwksFileBytes = 1 << 20;

int Usage(std::ostream& err, absl::string_view what) {
  err << "pmlctl verify token: error: " << what << "\n";
  return kVerifyExitUsage;
}

// Strings from the token are printed to a terminal: escape control characters so a claim cannot
// move the cursor or rewrite earlier lines.
std::string Printable(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

const Json* Member(const Json& j, absl::string_view key) {
  if (!j.is_object()) {
    return nullptr;
  }
  const auto it = j.find(std::string{key});
  return it == j.end() ? nullptr : &*it;
}

// A claim as text: strings as they are (escaped), numbers and booleans as JSON, `missing`
// otherwise (absent, null, arrays, objects).
std::string Text(const Json& j, absl::string_view key, absl::string_view missing = "(none)") {
  const Json* m = Member(j, key);
  if (m == nullptr) {
    return std::string{missing};
  }
  if (m->is_string()) {
    return Printable(m->get_ref<const std::string&>());
  }
  if (m->is_number() || m->is_boolean()) {
    return m->dump();
  }
  return std::string{missing};
}

std::optional<bool> Bool(const Json& j, absl::string_view key) {
  const Json* m = Member(j, key);
  if (m == nullptr || !m->is_boolean()) {
    return std::nullopt;
  }
  return m->get<bool>();
}

// A NumericDate claim (RFC 7519 §2). VerifyJwt has already refused non-numeric exp/nbf/iat.
std::optional<absl::Time> Date(const Json& j, absl::string_view key) {
  const Json* m = Member(j, key);
  if (m == nullptr || !m->is_number()) {
    return std::nullopt;
  }
  if (m->is_number_integer()) {
    return absl::FromUnixSeconds(m->get<int64_t>());
  }
  if (m->is_number_unsigned()) {
    return absl::FromUnixSeconds(
        static_cast<int64_t>(std::min<uint64_t>(m->get<uint64_t>(), INT64_MAX)));
  }
  const double d = m->get<double>();
  if (!std::isfinite(d)) {
    return std::nullopt;
  }
  return absl::FromUnixSeconds(static_cast<int64_t>(std::clamp(d, -1e15, 1e15)));
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string TimeClaim(const Json& payload, absl::string_view key) {
  const std::optional<absl::Time> t = Date(payload, key);
  return t.has_value() ? Rfc3339(*t) : std::string("(none)");
}

// "cpu0" < "gpu0" < "gpu2" < "gpu10" < "nvswitch0": by name, then by index as a number, so eight
// or more GPUs print in bundle order.
bool SubmoduleLess(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    size_t digits = s.size();
    while (digits > 0 && absl::ascii_isdigit(static_cast<unsigned char>(s[digits - 1]))) {
      --digits;
    }
    uint64_t n = 0;
    const bool numbered = digits < s.size() && absl::SimpleAtoi(s.substr(digits), &n);
    return std::make_tuple(s.substr(0, digits), numbered ? n : UINT64_MAX, s);
  };
  return split(a) < split(b);
}

absl::StatusOr<std::string> ReadToken(absl::string_view arg) {
  std::string text;
  if (!absl::ConsumePrefix(&arg, "@")) {
    text = std::string{arg};
  } else if (arg == "-") {
    char buf[4096];
    while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
      text.append(buf, static_cast<size_t>(std::cin.gcount()));
      if (text.size() > kMaxTokenFileBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("standard input holds more than ", kMaxTokenFileBytes, " bytes"));
      }
    }
  } else {
    PML_ASSIGN_OR_RETURN(text, core::ReadFile(arg, kMaxTokenFileBytes));
  }
  absl::string_view token = absl::StripAsciiWhitespace(text);
  if (token.empty()) {
    return absl::InvalidArgumentError("the token is empty");
  }
  return std::string{token};
}

absl::StatusOr<crypto::JwkSet> ReadJwks(const std::string& path) {
  PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path, kMaxJwksFileBytes));
  auto jwks = crypto::JwkSet::ParseText(text);
  if (!jwks.ok()) {
    return core::Annotate(jwks.status(), path);
  }
  if (jwks->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the JWKS holds no P-256/P-384 signing key"));
  }
  return jwks;
}

void PrintSubmodules(const Json& payload, std::ostream& out, size_t& failed_checks) {
  const Json* submods = Member(payload, "submods");
  if (submods == nullptr || !submods->is_object() || submods->empty()) {
    out << "submodules:   (none)\n";
    return;
  }
  std::vector<std::string> names;
  for (const auto& [name, unused] : submods->items()) {
    names.push_back(name);
  }
  std::sort(names.begin(), names.end(), SubmoduleLess);
  out << "submodules:\n";
  for (const std::string& name : names) {
    const Json& s = (*submods)[name];
    std::string line =
        absl::StrCat("  ", Printable(name), ": ", Text(s, "ear.status", "(no status)"));
    // A few identifying claims, when the submodule has them (ITA names for cpu0, NVIDIA's for
    // devices; services/attestation/appraiser.cc).
    for (const auto& [key, label] :
         {std::pair<const char*, const char*>{"attester_tcb_status", "tcb"},
          {"x-nvidia-gpu-driver-version", "driver"},
          {"pml_cc_mode", "cc"}}) {
      if (const Json* m = Member(s, key); m != nullptr && m->is_string()) {
        absl::StrAppend(&line, "  ", label, " ", Printable(m->get_ref<const std::string&>()));
      }
    }
    if (Bool(s, "simulated").value_or(false)) {
      absl::StrAppend(&line, "  SIMULATED");
    }
    out << line << "\n";
    const Json* failed = Member(s, "pml.failed_checks");
    if (failed == nullptr || !failed->is_array()) {
      continue;
    }
    for (const Json& f : *failed) {
      ++failed_checks;
      out << "    - " << Text(f, "check", "(unnamed check)") << ": " << Text(f, "detail", "")
          << "\n";
    }
  }
}

void PrintSummary(const crypto::VerifiedJwt& v, absl::Time at, std::ostream& out) {
  const Json& p = v.payload;
  const std::optional<bool> allowed = Bool(p, "pml.allowed");
  const bool simulated = Bool(p, "simulated").value_or(false);
  auto line = [&](absl::string_view key, const std::string& value) {
    out << absl::StrCat(key, ":") << std::string(key.size() < 13 ? 13 - key.size() : 1, ' ')
        << value << "\n";
  };
  out << "VERIFIED  " << Text(v.header, "alg") << " signature by kid " << Text(v.header, "kid")
      << ", issuer " << Text(p, "iss") << "\n";
  if (simulated) {
    out << "WARNING: SIMULATED evidence: proves nothing (appraised under a policy that allows "
           "simulated evidence)\n";
  }
  line("allowed", !allowed.has_value() ? "NO (the token has no boolean pml.allowed)"
                  : *allowed           ? "yes"
                                       : "NO");
  line("status", Text(p, "ear.status"));
  const Json* policy = Member(p, "pml.policy");
  if (policy != nullptr && policy->is_object()) {
    line("policy", absl::StrCat(Text(*policy, "id"), " v", Text(*policy, "version", "?"),
                                "  sha256 ", Text(*policy, "sha256")));
  } else {
    line("policy", "(none)");
  }
  line("report data", Text(p, "pml.report_data"));
  line("simulated", simulated ? "YES" : "no");
  line("issued", TimeClaim(p, "iat"));
  if (const std::optional<absl::Time> exp = Date(p, "exp"); exp.has_value()) {
    line("expires", absl::StrCat(Rfc3339(*exp), *exp > at ? " (in " : " (",
                                 absl::FormatDuration(absl::AbsDuration(*exp - at)),
                                 *exp > at ? ")" : " ago, within the allowed clock skew)"));
  } else {
    line("expires", "(none)");
  }
  line("checked at", Rfc3339(at));
  size_t failed_checks = 0;
  PrintSubmodules(p, out, failed_checks);
  if (allowed.value_or(false)) {
    out << "verdict: ALLOWED" << (simulated ? " (SIMULATED)" : "") << "\n";
  } else {
    out << "verdict: NOT ALLOWED (" << failed_checks << " failed check"
        << (failed_checks == 1 ? "" : "s") << ")\n";
  }
}

}  // namespace

int RunVerifyToken(const VerifyTokenOptions& options, std::ostream& out, std::ostream& err) {
  if (!options.extras.empty()) {
    return Usage(err, absl::StrCat("unexpected argument ", options.extras.front(),
                                   " (see pmlctl verify token --help)"));
  }
  if (options.token.empty()) {
    return Usage(err, "TOKEN (the token, or @FILE) is required");
  }
  if (options.jwks_path.empty()) {
    return Usage(err,
                 "--jwks is required: pmlctl verifies offline (save it with pmlctl token jwks)");
  }
  absl::Time at = absl::Now();
  if (!options.at.empty()) {
    auto t = ParseVerifyTime(options.at);
    if (!t.ok()) {
      return Usage(err, t.status().message());
    }
    at = *t;
  }
  auto token = ReadToken(options.token);
  if (!token.ok()) {
    return Usage(err, token.status().message());
  }
  auto jwks = ReadJwks(options.jwks_path);
  if (!jwks.ok()) {
    return Usage(err, absl::StrCat("--jwks: ", jwks.status().message()));
  }

  crypto::VerifyJwtOptions vo;
  vo.now = at;
  vo.allowed_algs = {"ES256"};
  vo.issuer = options.issuer;
  vo.require_exp = true;
  auto verified = crypto::VerifyJwt(*token, *jwks, vo);
  if (!verified.ok()) {
    if (absl::IsInvalidArgument(verified.status())) {
      return Usage(err, absl::StrCat("not a well-formed token: ", verified.status().message()));
    }
    std::vector<std::string> kids;
    for (const crypto::Jwk& k : jwks->keys()) {
      kids.push_back(k.kid);
    }
    if (options.json) {
      out << Json{{"verified", false},
                  {"reason", std::string{verified.status().message()}},
                  {"jwks_kids", kids}}
                 .dump(2)
          << "\n";
    } else {
      out << "REJECTED  " << Printable(verified.status().message()) << "\n"
          << "checked at:   " << Rfc3339(at) << "\n"
          << "jwks kids:    " << absl::StrJoin(kids, ", ") << "\n";
    }
    return kVerifyExitRejected;
  }

  const bool allowed = Bool(verified->payload, "pml.allowed").value_or(false);
  if (options.json) {
    out << verified->payload.dump(2, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace)
        << "\n";
    if (Bool(verified->payload, "simulated").value_or(false)) {
      err << "pmlctl verify token: WARNING: SIMULATED evidence: proves nothing\n";
    }
  } else {
    PrintSummary(*verified, at, out);
  }
  return allowed ? kVerifyExitVerified : kVerifyExitRejected;
}

void AddVerifyTokenCommand(CLI::App& verify) {
  auto o = std::make_shared<VerifyTokenOptions>();
  auto* token = verify.add_subcommand(
      "token",
      "check an attestation token (pml-verifier's ES256 EAR JWT from Appraise) offline against a\n"
      "JWKS saved with `pmlctl token jwks --out FILE`, then print its verdict: status, allowed,\n"
      "policy, expiry, and each submodule's status and failed checks. Exit 0 when the token\n"
      "verifies and pml.allowed is true, 1 when it verifies but is not allowed or is refused\n"
      "(bad signature, unknown kid, expired, wrong issuer: the reason is printed), 2 on usage/IO\n"
      "errors and malformed tokens");
  token->allow_extras();
  token->add_option("TOKEN", o->token,
                    "the compact token, @FILE for a file holding it, or @- for standard input");
  token->add_option("--jwks", o->jwks_path,
                    "the verifier's JWK Set ({\"keys\": [...]}) as `pmlctl token jwks` prints it "
                    "(required)");
  token
      ->add_option("--issuer", o->issuer,
                   "the iss the token must carry (\"\": do not check the issuer)")
      ->capture_default_str();
  token->add_option("--at", o->at,
                    "verification time for exp/nbf/iat (60 s leeway), RFC 3339 "
                    "(2025-07-01T00:00:00Z) or unix seconds (default: now)");
  token->add_flag("--json", o->json, "print the verified payload (the claims) as JSON");
  token->callback([token, o] {
    o->extras = token->remaining();
    const int code = RunVerifyToken(*o, std::cout, std::cerr);
    std::cout.flush();
    throw CLI::RuntimeError{code};
  });
}

}  // namespace pml::pmlctl
