#include "services/attestation/policy.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"

namespace pml::attestation {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kRoot = "policy";
// Intel's TCB status spellings that a policy may accept (lib/tdx TcbStatusName uses the same).
constexpr absl::string_view kTcbStatuses[] = {
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
};
constexpr absl::string_view kRevoked = "Revoked";
constexpr absl::string_view kImageVariants[] = {"production", "development"};
// A policy nests three levels (policy.allowed_os[i].mrtd); anything much deeper is not a policy.
constexpr int kMaxJsonDepth = 8;
// Bound on untrusted text quoted back in an error message.
constexpr size_t kMaxQuotedBytes = 64;

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

// `text` quoted and escaped for an error message, bounded.
std::string Quote(absl::string_view text) {
  const bool cut = text.size() > kMaxQuotedBytes;
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxQuotedBytes)), cut ? "..." : "",
                      "\"");
}

std::string IndexPath(absl::string_view path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

// path.key for identifier-like keys; path["escaped"] for anything else (untrusted input).
std::string FieldPath(absl::string_view path, absl::string_view key) {
  const bool plain = !key.empty() && key.size() <= kMaxQuotedBytes &&
                     std::all_of(key.begin(), key.end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
                     });
  if (plain) {
    return absl::StrCat(path, ".", key);
  }
  return absl::StrCat(path, "[", Quote(key), "]");
}

bool Contains(absl::Span<const absl::string_view> set, absl::string_view value) {
  return std::find(set.begin(), set.end(), value) != set.end();
}

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t extra = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) {
      return false;
    }
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// Description text: valid UTF-8 without C0/C1 control characters other than tab and newline.
absl::Status CheckDescription(absl::string_view text, absl::string_view path) {
  if (text.size() > kMaxPolicyDescriptionBytes) {
    return Invalid(path, absl::StrCat(text.size(), " bytes, over the ", kMaxPolicyDescriptionBytes,
                                      " byte limit"));
  }
  if (!IsValidUtf8(text)) {
    return Invalid(path, "not valid UTF-8");
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    const bool c0 = (c < 0x20 && c != '\t' && c != '\n') || c == 0x7F;
    // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
    const bool c1 = c == 0xC2 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) < 0xA0;
    if (c0 || c1) {
      return Invalid(path, absl::StrCat("control character at byte ", i));
    }
  }
  return absl::OkStatus();
}

// Driver / VBIOS version: [0-9A-Za-z._-]{1,64}.
bool IsValidVersion(absl::string_view v) {
  return !v.empty() && v.size() <= kMaxPolicyTokenBytes &&
         std::all_of(v.begin(), v.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                  c == '-';
         });
}

// Advisory id: upper-case letters and digits in dash-separated groups, starting with a letter,
// at least two groups ("INTEL-SA-00837").
bool IsValidAdvisoryId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxPolicyTokenBytes || !absl::ascii_isupper(id[0])) {
    return false;
  }
  size_t groups = 1;
  bool group_empty = false;
  for (char c : id) {
    if (c == '-') {
      if (group_empty) {
        return false;
      }
      ++groups;
      group_empty = true;
    } else if (absl::ascii_isupper(static_cast<unsigned char>(c)) ||
               absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      group_empty = false;
    } else {
      return false;
    }
  }
  return groups >= 2 && !group_empty;
}

absl::Status CheckListSize(size_t size, absl::string_view path) {
  if (size > kMaxPolicyListEntries) {
    return Invalid(path,
                   absl::StrCat(size, " entries, over the ", kMaxPolicyListEntries, " limit"));
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckUnique(const std::vector<T>& items, absl::string_view path) {
  PML_RETURN_IF_ERROR(CheckListSize(items.size(), path));
  std::map<T, size_t> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto [it, inserted] = seen.emplace(items[i], i);
    if (!inserted) {
      return Invalid(IndexPath(path, i), absl::StrCat("duplicate of [", it->second, "]"));
    }
  }
  return absl::OkStatus();
}

// A list of strings that must be unique, each passing `valid` (else `want` is the problem).
template <typename Valid>
absl::Status CheckStrings(const std::vector<std::string>& items, absl::string_view path,
                          Valid valid, absl::string_view want) {
  PML_RETURN_IF_ERROR(CheckUnique(items, path));
  for (size_t i = 0; i < items.size(); ++i) {
    if (!valid(items[i])) {
      return Invalid(IndexPath(path, i), absl::StrCat(want, ", got ", Quote(items[i])));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGpu(const GpuPolicy& gpu, absl::string_view path) {
  const auto want = absl::StrCat("want a whole number from 0 to ", kMaxPolicyGpuCount);
  if (gpu.count.has_value() && *gpu.count > kMaxPolicyGpuCount) {
    return Invalid(FieldPath(path, "count"), want);
  }
  if (gpu.min_count > kMaxPolicyGpuCount) {
    return Invalid(FieldPath(path, "min_count"), want);
  }
  if (gpu.count.has_value() && *gpu.count < gpu.min_count) {
    return Invalid(FieldPath(path, "count"),
                   absl::StrCat(*gpu.count, " is below min_count ", gpu.min_count));
  }
  PML_RETURN_IF_ERROR(CheckStrings(gpu.allowed_driver_versions,
                                   FieldPath(path, "allowed_driver_versions"), IsValidVersion,
                                   "want a version of [0-9A-Za-z._-], 1 to 64 characters"));
  return CheckStrings(gpu.allowed_vbios_versions, FieldPath(path, "allowed_vbios_versions"),
                      IsValidVersion, "want a version of [0-9A-Za-z._-], 1 to 64 characters");
}

// ---------------------------------------------------------------------------------------------
// JSON → model. Each reader checks one value's type and shape and names `path` when it fails;
// ValidatePolicy then checks the rules that span fields.

absl::Status ReadBool(const Json& v, const std::string& path, bool& out) {
  if (!v.is_boolean()) {
    return Invalid(path, "want true or false");
  }
  out = v.get<bool>();
  return absl::OkStatus();
}

absl::Status ReadCount(const Json& v, const std::string& path, uint32_t& out) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > kMaxPolicyGpuCount) {
    return Invalid(path, absl::StrCat("want a whole number from 0 to ", kMaxPolicyGpuCount));
  }
  out = static_cast<uint32_t>(v.get<uint64_t>());
  return absl::OkStatus();
}

absl::Status ReadString(const Json& v, const std::string& path, std::string& out) {
  if (!v.is_string()) {
    return Invalid(path, "want a string");
  }
  out = v.get<std::string>();
  return absl::OkStatus();
}

template <size_t N>
absl::Status ReadHex(const Json& v, const std::string& path, std::array<uint8_t, N>& out) {
  const auto want = [&] { return Invalid(path, absl::StrCat("want ", 2 * N, " hex digits")); };
  if (!v.is_string()) {
    return want();
  }
  const auto& text = v.get_ref<const std::string&>();
  // Exactly 2N hex digits: HexDecode alone would also take a "0x" prefix.
  if (text.size() != 2 * N || !std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      })) {
    return want();
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, core::HexDecode(text));
  if (bytes.size() != N) {
    return want();
  }
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return absl::OkStatus();
}

template <typename T, typename ReadOne>
absl::Status ReadList(const Json& v, const std::string& path, std::vector<T>& out,
                      ReadOne read_one) {
  if (!v.is_array()) {
    return Invalid(path, "want a list");
  }
  PML_RETURN_IF_ERROR(CheckListSize(v.size(), path));
  out.clear();
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    T item{};
    PML_RETURN_IF_ERROR(read_one(v[i], IndexPath(path, i), item));
    out.push_back(std::move(item));
  }
  return absl::OkStatus();
}

// Calls `field(key, value, path_of_key)` for each member; `field` refuses unknown keys.
template <typename Field>
absl::Status ReadObject(const Json& v, const std::string& path, Field field) {
  if (!v.is_object()) {
    return Invalid(path, "want an object");
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    PML_RETURN_IF_ERROR(field(it.key(), it.value(), FieldPath(path, it.key())));
  }
  return absl::OkStatus();
}

absl::Status Unknown(const std::string& path) { return Invalid(path, "unknown field"); }

absl::Status ReadOsEntry(const Json& v, const std::string& path, OsMeasurements& out) {
  return ReadObject(
      v, path,
      [&](const std::string& key, const Json& value, const std::string& field) -> absl::Status {
        std::optional<Measurement>* slot = key == "mrtd"    ? &out.mrtd
                                           : key == "rtmr0" ? &out.rtmr0
                                           : key == "rtmr1" ? &out.rtmr1
                                           : key == "rtmr2" ? &out.rtmr2
                                                            : nullptr;
        if (slot == nullptr) {
          return Unknown(field);
        }
        Measurement m{};
        PML_RETURN_IF_ERROR(ReadHex(value, field, m));
        *slot = m;
        return absl::OkStatus();
      });
}

absl::Status ReadGpu(const Json& v, const std::string& path, GpuPolicy& out) {
  return ReadObject(
      v, path,
      [&](const std::string& key, const Json& value, const std::string& field) -> absl::Status {
        if (key == "count") {
          uint32_t count = 0;
          PML_RETURN_IF_ERROR(ReadCount(value, field, count));
          out.count = count;
          return absl::OkStatus();
        }
        if (key == "min_count") {
          return ReadCount(value, field, out.min_count);
        }
        if (key == "require_cc") {
          return ReadBool(value, field, out.require_cc);
        }
        if (key == "allow_devtools") {
          return ReadBool(value, field, out.allow_devtools);
        }
        if (key == "require_measurements_match") {
          return ReadBool(value, field, out.require_measurements_match);
        }
        if (key == "allowed_driver_versions") {
          return ReadList(value, field, out.allowed_driver_versions, ReadString);
        }
        if (key == "allowed_vbios_versions") {
          return ReadList(value, field, out.allowed_vbios_versions, ReadString);
        }
        return Unknown(field);
      });
}

absl::Status ReadPolicy(const Json& v, AppraisalPolicy& out) {
  const std::string root(kRoot);
  return ReadObject(
      v, root,
      [&](const std::string& key, const Json& value, const std::string& field) -> absl::Status {
        if (key == "allowed_os") {
          return ReadList(value, field, out.allowed_os, ReadOsEntry);
        }
        if (key == "allowed_os_image_hashes") {
          return ReadList(value, field, out.allowed_os_image_hashes, ReadHex<32>);
        }
        if (key == "allow_any_os") {
          return ReadBool(value, field, out.allow_any_os);
        }
        if (key == "allowed_compose_hashes") {
          return ReadList(value, field, out.allowed_compose_hashes, ReadHex<32>);
        }
        if (key == "allowed_app_ids") {
          return ReadList(value, field, out.allowed_app_ids, ReadHex<20>);
        }
        if (key == "allow_any_app") {
          return ReadBool(value, field, out.allow_any_app);
        }
        if (key == "allowed_tcb_statuses") {
          return ReadList(value, field, out.allowed_tcb_statuses, ReadString);
        }
        if (key == "allowed_advisory_ids") {
          return ReadList(value, field, out.allowed_advisory_ids, ReadString);
        }
        if (key == "allow_debug") {
          return ReadBool(value, field, out.allow_debug);
        }
        if (key == "allow_simulated") {
          return ReadBool(value, field, out.allow_simulated);
        }
        if (key == "allow_expired_collateral") {
          return ReadBool(value, field, out.allow_expired_collateral);
        }
        if (key == "allowed_image_variants") {
          return ReadList(value, field, out.allowed_image_variants, ReadString);
        }
        if (key == "require_event_log") {
          return ReadBool(value, field, out.require_event_log);
        }
        if (key == "gpu") {
          return ReadGpu(value, field, out.gpu);
        }
        if (key == "description") {
          return ReadString(value, field, out.description);
        }
        return Unknown(field);
      });
}

// Parses strictly: refuses duplicate keys (nlohmann keeps one silently) and deep nesting. The
// callback's `depth` is the number of containers open around the event (0 for the root).
absl::StatusOr<Json> ParseStrictJson(absl::string_view text) {
  std::vector<std::set<std::string>> keys;  // keys[d]: keys seen in the open object at depth d
  bool too_deep = false;
  std::optional<std::string> duplicate;
  const Json::parser_callback_t callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    const auto d = static_cast<size_t>(depth);
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) {
          too_deep = true;
          return false;  // discarded: the tree (and its destruction) stays shallow
        }
        if (event == Json::parse_event_t::object_start) {
          if (keys.size() <= d) {
            keys.resize(d + 1);
          }
          keys[d].clear();
        }
        return true;
      case Json::parse_event_t::key:
        if (d >= 1 && d - 1 < keys.size() &&
            !keys[d - 1].insert(parsed.get<std::string>()).second && !duplicate.has_value()) {
          duplicate = parsed.get<std::string>();
        }
        return true;
      default:
        return true;
    }
  };
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                      /*ignore_comments=*/false);
  } catch (const Json::parse_error& e) {
    // e.what() quotes the input; report only where it broke.
    return Invalid(kRoot, absl::StrCat("malformed JSON at byte ", e.byte));
  } catch (const Json::exception& e) {
    return Invalid(kRoot, absl::StrCat("malformed JSON (error ", e.id, ")"));
  }
  if (too_deep) {
    return Invalid(kRoot, absl::StrCat("nested deeper than ", kMaxJsonDepth));
  }
  if (duplicate.has_value()) {
    return Invalid(kRoot, absl::StrCat("duplicate key ", Quote(*duplicate)));
  }
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Model → JSON.

template <size_t N>
Json HexJson(const std::array<uint8_t, N>& bytes) {
  return core::HexEncode(absl::Span<const uint8_t>(bytes));
}

template <size_t N>
Json HexListJson(const std::vector<std::array<uint8_t, N>>& list) {
  Json out = Json::array();
  for (const auto& item : list) {
    out.push_back(HexJson(item));
  }
  return out;
}

}  // namespace

absl::Status ValidatePolicy(const AppraisalPolicy& p) {
  const std::string root(kRoot);
  const auto field = [&](absl::string_view name) { return FieldPath(root, name); };

  // OS.
  PML_RETURN_IF_ERROR(CheckUnique(p.allowed_os, field("allowed_os")));
  for (size_t i = 0; i < p.allowed_os.size(); ++i) {
    const OsMeasurements& e = p.allowed_os[i];
    if (!e.mrtd && !e.rtmr0 && !e.rtmr1 && !e.rtmr2) {
      return Invalid(IndexPath(field("allowed_os"), i),
                     "want at least one of mrtd, rtmr0, rtmr1, rtmr2");
    }
  }
  PML_RETURN_IF_ERROR(CheckUnique(p.allowed_os_image_hashes, field("allowed_os_image_hashes")));
  const bool os_listed = !p.allowed_os.empty() || !p.allowed_os_image_hashes.empty();
  if (p.allow_any_os && os_listed) {
    return Invalid(field("allow_any_os"),
                   "true while allowed_os or allowed_os_image_hashes lists entries");
  }
  if (!p.allow_any_os && !os_listed) {
    return Invalid(field("allowed_os"),
                   "want at least one entry here or in allowed_os_image_hashes, or allow_any_os "
                   "set to true");
  }

  // App.
  PML_RETURN_IF_ERROR(CheckUnique(p.allowed_compose_hashes, field("allowed_compose_hashes")));
  PML_RETURN_IF_ERROR(CheckUnique(p.allowed_app_ids, field("allowed_app_ids")));
  if (p.allow_any_app && (!p.allowed_compose_hashes.empty() || !p.allowed_app_ids.empty())) {
    return Invalid(field("allow_any_app"),
                   "true while allowed_compose_hashes or allowed_app_ids lists entries");
  }

  // TCB.
  const std::string tcb = field("allowed_tcb_statuses");
  PML_RETURN_IF_ERROR(CheckUnique(p.allowed_tcb_statuses, tcb));
  if (p.allowed_tcb_statuses.empty()) {
    return Invalid(tcb, "want at least one status");
  }
  for (size_t i = 0; i < p.allowed_tcb_statuses.size(); ++i) {
    const std::string& status = p.allowed_tcb_statuses[i];
    if (status == kRevoked) {
      return Invalid(IndexPath(tcb, i), "Revoked may never be allowed");
    }
    if (!Contains(kTcbStatuses, status)) {
      return Invalid(IndexPath(tcb, i), absl::StrCat("unknown TCB status ", Quote(status)));
    }
  }
  PML_RETURN_IF_ERROR(CheckStrings(p.allowed_advisory_ids, field("allowed_advisory_ids"),
                                   IsValidAdvisoryId, "want an advisory id like INTEL-SA-00837"));

  // Image variants.
  const std::string variants = field("allowed_image_variants");
  PML_RETURN_IF_ERROR(CheckStrings(
      p.allowed_image_variants, variants,
      [](absl::string_view v) { return Contains(kImageVariants, v); },
      "want \"production\" or \"development\""));
  if (p.allowed_image_variants.empty()) {
    return Invalid(variants, "want at least one variant");
  }

  PML_RETURN_IF_ERROR(CheckGpu(p.gpu, field("gpu")));
  return CheckDescription(p.description, field("description"));
}

absl::StatusOr<AppraisalPolicy> ParsePolicyJson(absl::string_view json) {
  if (json.size() > kMaxPolicyJsonBytes) {
    return Invalid(kRoot, absl::StrCat("document is ", json.size(), " bytes, over the ",
                                       kMaxPolicyJsonBytes, " byte limit"));
  }
  PML_ASSIGN_OR_RETURN(const Json doc, ParseStrictJson(json));
  AppraisalPolicy policy;
  PML_RETURN_IF_ERROR(ReadPolicy(doc, policy));
  PML_RETURN_IF_ERROR(ValidatePolicy(policy));
  return policy;
}

std::string PolicyToJson(const AppraisalPolicy& p) {
  // nlohmann's object is a std::map: keys come out sorted, so the form is canonical.
  Json os = Json::array();
  for (const OsMeasurements& e : p.allowed_os) {
    Json entry = Json::object();
    if (e.mrtd) {
      entry["mrtd"] = HexJson(*e.mrtd);
    }
    if (e.rtmr0) {
      entry["rtmr0"] = HexJson(*e.rtmr0);
    }
    if (e.rtmr1) {
      entry["rtmr1"] = HexJson(*e.rtmr1);
    }
    if (e.rtmr2) {
      entry["rtmr2"] = HexJson(*e.rtmr2);
    }
    os.push_back(std::move(entry));
  }
  Json gpu = Json::object();
  if (p.gpu.count.has_value()) {
    gpu["count"] = *p.gpu.count;
  }
  gpu["min_count"] = p.gpu.min_count;
  gpu["require_cc"] = p.gpu.require_cc;
  gpu["allow_devtools"] = p.gpu.allow_devtools;
  gpu["require_measurements_match"] = p.gpu.require_measurements_match;
  gpu["allowed_driver_versions"] = p.gpu.allowed_driver_versions;
  gpu["allowed_vbios_versions"] = p.gpu.allowed_vbios_versions;

  Json j = Json::object();
  j["allowed_os"] = std::move(os);
  j["allowed_os_image_hashes"] = HexListJson(p.allowed_os_image_hashes);
  j["allow_any_os"] = p.allow_any_os;
  j["allowed_compose_hashes"] = HexListJson(p.allowed_compose_hashes);
  j["allowed_app_ids"] = HexListJson(p.allowed_app_ids);
  j["allow_any_app"] = p.allow_any_app;
  j["allowed_tcb_statuses"] = p.allowed_tcb_statuses;
  j["allowed_advisory_ids"] = p.allowed_advisory_ids;
  j["allow_debug"] = p.allow_debug;
  j["allow_simulated"] = p.allow_simulated;
  j["allow_expired_collateral"] = p.allow_expired_collateral;
  j["allowed_image_variants"] = p.allowed_image_variants;
  j["require_event_log"] = p.require_event_log;
  j["gpu"] = std::move(gpu);
  j["description"] = p.description;
  // `replace` instead of throwing on invalid UTF-8 (only possible for a policy that fails
  // ValidatePolicy).
  return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string PolicyDigest(const AppraisalPolicy& policy) {
  return core::HexEncode(crypto::Sha256(PolicyToJson(policy)));
}

bool IsValidPolicyId(absl::string_view id) {
  if (id.empty() || id.size() > 63) {
    return false;
  }
  const auto lower_or_digit = [](char c) {
    return absl::ascii_islower(static_cast<unsigned char>(c)) ||
           absl::ascii_isdigit(static_cast<unsigned char>(c));
  };
  if (!lower_or_digit(id[0])) {
    return false;
  }
  return std::all_of(id.begin() + 1, id.end(),
                     [&](char c) { return lower_or_digit(c) || c == '.' || c == '_' || c == '-'; });
}

}  // namespace pml::attestation
