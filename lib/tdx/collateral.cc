#include "lib/tdx/collateral.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"
#include "lib/tdx/errors.h"

namespace pml::tdx {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kMissingParameters = error_class::kMissingParameters;
constexpr absl::string_view kUnsupportedCertFormat = error_class::kUnsupportedCertFormat;
// Collateral documents are tens of KB; processor-CA CRLs can reach a few hundred KB.
constexpr size_t kMaxCollateralFile = 8 << 20;
constexpr int kMaxJsonDepth = 64;

absl::Status Err(absl::string_view cls, absl::string_view field, absl::string_view what) {
  return MakeError(absl::StatusCode::kInvalidArgument, cls, absl::StrCat(field, ": ", what));
}

absl::string_view ClassForField(absl::string_view field) {
  if (absl::StartsWith(field, "tcb_info")) return error_class::kTcbInfoUnsupportedFormat;
  if (absl::StartsWith(field, "qe_identity")) return error_class::kQeIdentityUnsupportedFormat;
  if (absl::EndsWith(field, "crl")) return error_class::kCrlUnsupportedFormat;
  return kUnsupportedCertFormat;
}

absl::StatusOr<std::string> GetString(const Json& j, absl::string_view field, bool required) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) {
    if (!required) return std::string();
    return Err(kMissingParameters, field, "missing");
  }
  if (!it->is_string()) return Err(ClassForField(field), field, "not a string");
  return it->get<std::string>();
}

absl::StatusOr<std::vector<uint8_t>> GetHex(const Json& j, absl::string_view field) {
  PML_ASSIGN_OR_RETURN(std::string text, GetString(j, field, /*required=*/true));
  auto bytes = core::HexDecode(absl::StripAsciiWhitespace(text));
  if (!bytes.ok()) return Err(ClassForField(field), field, bytes.status().message());
  return std::move(bytes).value();
}

absl::Status CheckSignatureLength(const std::vector<uint8_t>& sig, absl::string_view field) {
  if (sig.size() != 64) {
    return Err(ClassForField(field), field,
               absl::StrCat("signature has ", sig.size(), " bytes, want 64 (r||s)"));
  }
  return absl::OkStatus();
}

void AppendField(std::string& out, absl::string_view tag, absl::string_view data) {
  absl::StrAppend(&out, tag, ":", data.size(), ":", data, ";");
}

// A minimal JSON structure scanner for ParsePcsSignedJson: it only finds token boundaries, so
// the body is returned exactly as it appears in the document.
class JsonScanner {
 public:
  explicit JsonScanner(absl::string_view s) : s_(s) {}

  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipWs();
    return pos_ == s_.size();
  }
  size_t pos() const { return pos_; }

  // A JSON string at the cursor; returns its decoded value only for plain keys (escapes are
  // kept verbatim, which is enough to compare against our ASCII keys).
  absl::StatusOr<std::string> String() {
    SkipWs();
    if (pos_ >= s_.size() || s_[pos_] != '"') return Bad("expected a string");
    const size_t start = ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '\\') {
        pos_ += 2;
        continue;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Bad("control character in string");
      if (c == '"') {
        std::string out(s_.substr(start, pos_ - start));
        ++pos_;
        return out;
      }
      ++pos_;
    }
    return Bad("unterminated string");
  }

  // Skips one JSON value; returns [begin, end) of its bytes.
  absl::StatusOr<std::pair<size_t, size_t>> Value() {
    SkipWs();
    const size_t begin = pos_;
    if (pos_ >= s_.size()) return Bad("expected a value");
    const char c = s_[pos_];
    if (c == '"') {
      PML_RETURN_IF_ERROR(String().status());
      return std::make_pair(begin, pos_);
    }
    if (c == '{' || c == '[') {
      int depth = 0;
      while (pos_ < s_.size()) {
        const char d = s_[pos_];
        if (d == '"') {
          PML_RETURN_IF_ERROR(String().status());
          continue;
        }
        if (d == '{' || d == '[') {
          if (++depth > kMaxJsonDepth) return Bad("nesting too deep");
        } else if (d == '}' || d == ']') {
          if (--depth == 0) {
            ++pos_;
            return std::make_pair(begin, pos_);
          }
        }
        ++pos_;
      }
      return Bad("unterminated object or array");
    }
    // number / true / false / null
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '}' && s_[pos_] != ']' &&
           s_[pos_] != ' ' && s_[pos_] != '\n' && s_[pos_] != '\r' && s_[pos_] != '\t') {
      ++pos_;
    }
    if (pos_ == begin) return Bad("expected a value");
    return std::make_pair(begin, pos_);
  }

 private:
  absl::Status Bad(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(what, " at offset ", pos_));
  }
  absl::string_view s_;
  size_t pos_ = 0;
};

absl::StatusOr<std::string> ReadText(absl::string_view dir, absl::string_view name) {
  return core::ReadFile(absl::StrCat(dir, "/", name), kMaxCollateralFile);
}

}  // namespace

std::array<uint8_t, 32> CollateralDigest(const Collateral& c) {
  std::string buf;
  buf.reserve(c.tcb_info_body.size() + c.qe_identity_body.size() + c.pck_crl.size() +
              c.root_ca_crl.size() + c.tcb_info_issuer_chain.size() * 3 + 512);
  AppendField(buf, "ti", c.tcb_info_body);
  AppendField(buf, "tis", core::ToString(c.tcb_info_signature));
  AppendField(buf, "tic", c.tcb_info_issuer_chain);
  AppendField(buf, "qi", c.qe_identity_body);
  AppendField(buf, "qis", core::ToString(c.qe_identity_signature));
  AppendField(buf, "qic", c.qe_identity_issuer_chain);
  AppendField(buf, "pc", core::ToString(c.pck_crl));
  AppendField(buf, "pcc", c.pck_crl_issuer_chain);
  AppendField(buf, "rc", core::ToString(c.root_ca_crl));
  AppendField(buf, "pkc", c.pck_certificate_chain);
  return crypto::Sha256(buf);
}

absl::StatusOr<Collateral> ParseCollateralJson(absl::string_view json) {
  if (json.size() > kMaxCollateralFile) {
    return Err(kMissingParameters, "collateral", "document is too large");
  }
  const Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Err(kMissingParameters, "collateral", "not a json object");
  }
  Collateral c;
  PML_ASSIGN_OR_RETURN(c.tcb_info_body, GetString(j, "tcb_info", true));
  PML_ASSIGN_OR_RETURN(c.tcb_info_signature, GetHex(j, "tcb_info_signature"));
  PML_RETURN_IF_ERROR(CheckSignatureLength(c.tcb_info_signature, "tcb_info_signature"));
  PML_ASSIGN_OR_RETURN(c.tcb_info_issuer_chain, GetString(j, "tcb_info_issuer_chain", true));
  PML_ASSIGN_OR_RETURN(c.qe_identity_body, GetString(j, "qe_identity", true));
  PML_ASSIGN_OR_RETURN(c.qe_identity_signature, GetHex(j, "qe_identity_signature"));
  PML_RETURN_IF_ERROR(CheckSignatureLength(c.qe_identity_signature, "qe_identity_signature"));
  PML_ASSIGN_OR_RETURN(c.qe_identity_issuer_chain,
                       GetString(j, "qe_identity_issuer_chain", true));
  PML_ASSIGN_OR_RETURN(c.pck_crl, GetHex(j, "pck_crl"));
  PML_ASSIGN_OR_RETURN(c.pck_crl_issuer_chain, GetString(j, "pck_crl_issuer_chain", true));
  PML_ASSIGN_OR_RETURN(c.root_ca_crl, GetHex(j, "root_ca_crl"));
  PML_ASSIGN_OR_RETURN(c.pck_certificate_chain, GetString(j, "pck_certificate_chain", false));
  return c;
}

absl::StatusOr<std::string> CollateralToJson(const Collateral& c) {
  Json j = Json::object();
  j["tcb_info_issuer_chain"] = c.tcb_info_issuer_chain;
  j["tcb_info"] = c.tcb_info_body;
  j["tcb_info_signature"] = core::HexEncode(c.tcb_info_signature);
  j["qe_identity_issuer_chain"] = c.qe_identity_issuer_chain;
  j["qe_identity"] = c.qe_identity_body;
  j["qe_identity_signature"] = core::HexEncode(c.qe_identity_signature);
  j["pck_crl_issuer_chain"] = c.pck_crl_issuer_chain;
  j["root_ca_crl"] = core::HexEncode(c.root_ca_crl);
  j["pck_crl"] = core::HexEncode(c.pck_crl);
  if (!c.pck_certificate_chain.empty()) j["pck_certificate_chain"] = c.pck_certificate_chain;
  try {
    return j.dump();
  } catch (const Json::exception& e) {
    return Err(kMissingParameters, "collateral", absl::StrCat("cannot serialize: ", e.what()));
  }
}

absl::StatusOr<SignedJsonBody> ParsePcsSignedJson(absl::string_view document,
                                                  absl::string_view body_key) {
  const absl::string_view cls = body_key == "tcbInfo" ? error_class::kTcbInfoUnsupportedFormat
                                                      : error_class::kQeIdentityUnsupportedFormat;
  auto bad = [&](absl::string_view what) { return Err(cls, body_key, what); };
  if (document.size() > kMaxCollateralFile) return bad("document is too large");
  JsonScanner s(document);
  if (!s.Consume('{')) return bad("document is not a json object");
  std::optional<std::pair<size_t, size_t>> body;
  std::optional<std::string> signature;
  if (!s.Consume('}')) {
    while (true) {
      auto key = s.String();
      if (!key.ok()) return bad(key.status().message());
      if (!s.Consume(':')) return bad(absl::StrCat("expected ':' at offset ", s.pos()));
      auto value = s.Value();
      if (!value.ok()) return bad(value.status().message());
      const absl::string_view raw =
          document.substr(value->first, value->second - value->first);
      if (*key == body_key) {
        if (body.has_value()) return bad("body key appears twice");
        if (raw.empty() || raw[0] != '{') return bad("body is not an object");
        body = *value;
      } else if (*key == "signature") {
        if (signature.has_value()) return bad("signature appears twice");
        if (raw.size() < 2 || raw[0] != '"') return bad("signature is not a string");
        signature = std::string(raw.substr(1, raw.size() - 2));
      }
      if (s.Consume(',')) continue;
      if (s.Consume('}')) break;
      return bad(absl::StrCat("expected ',' or '}' at offset ", s.pos()));
    }
  }
  if (!s.AtEnd()) return bad("trailing bytes after the json object");
  if (!body.has_value()) return bad("missing body");
  if (!signature.has_value()) return bad("missing signature");
  SignedJsonBody out;
  out.body = std::string(document.substr(body->first, body->second - body->first));
  auto sig = core::HexDecode(*signature);
  if (!sig.ok()) return bad(absl::StrCat("signature: ", sig.status().message()));
  out.signature = std::move(sig).value();
  if (out.signature.size() != 64) {
    return bad(absl::StrCat("signature has ", out.signature.size(), " bytes, want 64"));
  }
  // The body must itself be well-formed JSON (the model parser reads it later).
  const Json check = Json::parse(out.body.begin(), out.body.end(), nullptr, false);
  if (check.is_discarded()) return bad("body is not valid json");
  return out;
}

absl::StatusOr<std::vector<uint8_t>> DecodeCrlBytes(absl::Span<const uint8_t> data) {
  auto bad = [](absl::string_view what) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kCrlUnsupportedFormat, what);
  };
  if (data.empty()) return bad("crl is empty");
  if (data[0] == 0x30) return std::vector<uint8_t>(data.begin(), data.end());  // DER SEQUENCE
  const absl::string_view text = absl::StripAsciiWhitespace(
      absl::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  if (absl::StartsWith(text, "-----BEGIN X509 CRL-----")) {
    const absl::string_view begin = "-----BEGIN X509 CRL-----";
    const size_t end = text.find("-----END X509 CRL-----");
    if (end == absl::string_view::npos) return bad("pem crl has no END line");
    std::string b64;
    for (char c : text.substr(begin.size(), end - begin.size())) {
      if (!absl::ascii_isspace(static_cast<unsigned char>(c))) b64.push_back(c);
    }
    auto der = core::Base64Decode(b64);
    if (!der.ok()) return bad(absl::StrCat("pem crl: ", der.status().message()));
    return std::move(der).value();
  }
  auto hex = core::HexDecode(text);
  if (hex.ok() && !hex->empty() && (*hex)[0] == 0x30) return std::move(hex).value();
  return bad("crl is neither der, pem nor hex");
}

absl::StatusOr<Collateral> LoadCollateralDir(absl::string_view dir) {
  Collateral c;
  PML_ASSIGN_OR_RETURN(std::string tcb_doc, ReadText(dir, "tcb_info.json"));
  PML_ASSIGN_OR_RETURN(SignedJsonBody tcb, ParsePcsSignedJson(tcb_doc, "tcbInfo"));
  c.tcb_info_body = std::move(tcb.body);
  c.tcb_info_signature = std::move(tcb.signature);
  PML_ASSIGN_OR_RETURN(c.tcb_info_issuer_chain, ReadText(dir, "tcb_info_issuer_chain.pem"));
  PML_ASSIGN_OR_RETURN(std::string qe_doc, ReadText(dir, "qe_identity.json"));
  PML_ASSIGN_OR_RETURN(SignedJsonBody qe, ParsePcsSignedJson(qe_doc, "enclaveIdentity"));
  c.qe_identity_body = std::move(qe.body);
  c.qe_identity_signature = std::move(qe.signature);
  PML_ASSIGN_OR_RETURN(c.qe_identity_issuer_chain,
                       ReadText(dir, "qe_identity_issuer_chain.pem"));
  PML_ASSIGN_OR_RETURN(std::string pck_crl, ReadText(dir, "pck_crl.der"));
  PML_ASSIGN_OR_RETURN(c.pck_crl, DecodeCrlBytes(core::AsBytes(pck_crl)));
  PML_ASSIGN_OR_RETURN(c.pck_crl_issuer_chain, ReadText(dir, "pck_crl_issuer_chain.pem"));
  PML_ASSIGN_OR_RETURN(std::string root_crl, ReadText(dir, "root_ca_crl.der"));
  PML_ASSIGN_OR_RETURN(c.root_ca_crl, DecodeCrlBytes(core::AsBytes(root_crl)));
  if (core::PathExists(absl::StrCat(dir, "/pck_certificate_chain.pem"))) {
    PML_ASSIGN_OR_RETURN(c.pck_certificate_chain, ReadText(dir, "pck_certificate_chain.pem"));
  }
  return c;
}

absl::StatusOr<Collateral> LoadCollateralJsonFile(absl::string_view path) {
  PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path, kMaxCollateralFile));
  return ParseCollateralJson(text);
}

}  // namespace pml::tdx
