#include "lib/gpu/evidence.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/gpu/errors.h"

namespace pml::gpu {
namespace {

absl::Status Malformed(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kEvidenceMalformed, detail);
}

absl::StatusOr<std::string> StringField(const nlohmann::json& o, absl::string_view field,
                                        absl::string_view where) {
  auto it = o.find(std::string(field));
  if (it == o.end() || !it->is_string()) {
    return Malformed(absl::StrCat(where, " has no string \"", field, "\""));
  }
  return it->get<std::string>();
}

absl::StatusOr<DeviceEvidence> ParseEntry(const nlohmann::json& e, absl::string_view where,
                                          std::optional<Arch> arch, std::optional<Nonce> nonce) {
  if (!e.is_object())
    return Malformed(absl::StrCat(where, " is not an object"));
  DeviceEvidence out;
  out.arch = arch;
  out.nonce = nonce;
  if (e.contains("arch")) {
    PML_ASSIGN_OR_RETURN(std::string a, StringField(e, "arch", where));
    auto parsed = ParseArch(a);
    if (!parsed.ok())
      return Malformed(absl::StrCat(where, ": ", parsed.status().message()));
    out.arch = *parsed;
  }
  if (e.contains("nonce")) {
    PML_ASSIGN_OR_RETURN(std::string n, StringField(e, "nonce", where));
    PML_ASSIGN_OR_RETURN(out.nonce, ParseNonceHex(n));
  }
  PML_ASSIGN_OR_RETURN(std::string ev, StringField(e, "evidence", where));
  auto report = core::Base64Decode(ev);
  if (!report.ok())
    return Malformed(absl::StrCat(where, " evidence is not base64"));
  out.report = *std::move(report);
  PML_ASSIGN_OR_RETURN(std::string cert, StringField(e, "certificate", where));
  auto pem = core::Base64Decode(cert);
  if (!pem.ok())
    return Malformed(absl::StrCat(where, " certificate is not base64"));
  out.certificate_chain = core::ToString(*pem);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<DeviceEvidence>> ParseEvidenceJson(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return Malformed("not valid JSON");
  std::vector<DeviceEvidence> out;
  const nlohmann::json* list = &j;
  std::optional<Arch> arch;
  std::optional<Nonce> nonce;
  if (j.is_object()) {  // NRAS request body
    PML_ASSIGN_OR_RETURN(std::string n, StringField(j, "nonce", "request"));
    PML_ASSIGN_OR_RETURN(nonce, ParseNonceHex(n));
    PML_ASSIGN_OR_RETURN(std::string a, StringField(j, "arch", "request"));
    auto parsed = ParseArch(a);
    if (!parsed.ok())
      return Malformed(absl::StrCat("request: ", parsed.status().message()));
    arch = *parsed;
    auto it = j.find("evidence_list");
    if (it == j.end() || !it->is_array())
      return Malformed("request has no evidence_list array");
    list = &*it;
  }
  if (!list->is_array())
    return Malformed("evidence is neither an array nor an NRAS request");
  if (list->empty())
    return Malformed("evidence list is empty");
  if (list->size() > kMaxEvidenceDevices) {
    return Malformed(absl::StrCat("evidence list has ", list->size(), " entries, more than ",
                                  kMaxEvidenceDevices));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    PML_ASSIGN_OR_RETURN(DeviceEvidence e,
                         ParseEntry((*list)[i], absl::StrCat("entry ", i), arch, nonce));
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<uint8_t>> DecodeHexReport(absl::string_view text) {
  std::string hex;
  hex.reserve(text.size());
  for (char c : text) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c)))
      hex += c;
  }
  auto bytes = core::HexDecode(hex);
  if (!bytes.ok())
    return Malformed(absl::StrCat("report hex: ", bytes.status().message()));
  return bytes;
}

absl::StatusOr<Nonce> ParseNonceHex(absl::string_view text) {
  auto bytes = core::HexDecode(absl::StripAsciiWhitespace(text));
  if (!bytes.ok() || bytes->size() != kNonceSize) {
    return Malformed("nonce is not 64 hex digits");
  }
  Nonce n;
  std::copy(bytes->begin(), bytes->end(), n.begin());
  return n;
}

}  // namespace pml::gpu
