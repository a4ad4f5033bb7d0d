#include "lib/tdx/tcb_info.h"


#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/internal/json_util.h"

namespace pml::tdx {
namespace {

using internal::JsonReader;

// Largest body accepted: real TCB infos are ~3-10 KB.
constexpr size_t kMaxBodySize = 1 << 20;
constexpr size_t kMaxLevels = 1024;
constexpr size_t kMaxAdvisories = 256;

// A timestamp field; errors carry the reader's class and path.
absl::StatusOr<absl::Time> ReadTime(const JsonReader& r, absl::string_view key,
                                    std::string* text = nullptr) {
  PML_ASSIGN_OR_RETURN(std::string s, r.String(key));
  auto t = ParseIntelTime(s);
  if (!t.ok()) return r.Error(absl::StrCat(key, ": ", t.status().message()));
  if (text != nullptr) *text = std::move(s);
  return *t;
}

absl::StatusOr<std::vector<std::string>> ReadAdvisories(const JsonReader& level) {
  std::vector<std::string> out;
  if (!level.Has("advisoryIDs")) return out;
  PML_ASSIGN_OR_RETURN(std::vector<JsonReader> ids, level.Array("advisoryIDs", kMaxAdvisories));
  for (const JsonReader& id : ids) {
    PML_ASSIGN_OR_RETURN(std::string s, id.AsString());
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<IsvTcbLevel> ReadIsvLevel(const JsonReader& level, bool module_level) {
  IsvTcbLevel out;
  PML_ASSIGN_OR_RETURN(JsonReader tcb, level.Object("tcb"));
  PML_ASSIGN_OR_RETURN(int64_t svn, tcb.Int("isvsvn", 0, 0xffff));
  out.isv_svn = static_cast<uint16_t>(svn);
  PML_ASSIGN_OR_RETURN(out.tcb_date, ReadTime(level, "tcbDate", &out.tcb_date_text));
  PML_ASSIGN_OR_RETURN(std::string status, level.String("tcbStatus"));
  PML_ASSIGN_OR_RETURN(out.status, ParseTcbStatus(status));
  // Module and QE identity levels may only use these three (QVL TcbStatus.h).
  if (out.status != TcbStatus::kUpToDate && out.status != TcbStatus::kOutOfDate &&
      out.status != TcbStatus::kRevoked) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kTcbUnrecognizedStatus,
                     absl::StrCat(module_level ? "tdx module" : "enclave identity",
                                  " tcb level status ", status, " is not allowed there"));
  }
  PML_ASSIGN_OR_RETURN(out.advisory_ids, ReadAdvisories(level));
  return out;
}

absl::StatusOr<TdxModule> ReadTdxModule(const JsonReader& m) {
  TdxModule out;
  PML_ASSIGN_OR_RETURN(out.mr_signer, m.HexArray<48>("mrsigner"));
  PML_ASSIGN_OR_RETURN(out.attributes, m.HexArray<8>("attributes"));
  PML_ASSIGN_OR_RETURN(out.attributes_mask, m.HexArray<8>("attributesMask"));
  return out;
}

absl::StatusOr<std::array<uint8_t, 16>> ReadComponents(const JsonReader& tcb,
                                                       absl::string_view key) {
  PML_ASSIGN_OR_RETURN(std::vector<JsonReader> comps, tcb.Array(key, 16));
  if (comps.size() != 16) {
    return tcb.Error(absl::StrCat(key, " has ", comps.size(), " entries, want 16"));
  }
  std::array<uint8_t, 16> out{};
  for (size_t i = 0; i < 16; ++i) {
    PML_ASSIGN_OR_RETURN(int64_t svn, comps[i].Int("svn", 0, 255));
    out[i] = static_cast<uint8_t>(svn);
  }
  return out;
}

absl::StatusOr<TcbLevel> ReadTcbLevel(const JsonReader& level, int version, bool tdx) {
  TcbLevel out;
  PML_ASSIGN_OR_RETURN(JsonReader tcb, level.Object("tcb"));
  if (version == 2) {
    // v2: flat sgxtcbcomp01svn..16svn + pcesvn.
    for (size_t i = 0; i < 16; ++i) {
      PML_ASSIGN_OR_RETURN(int64_t svn,
                           tcb.Int(absl::StrFormat("sgxtcbcomp%02dsvn", i + 1), 0, 255));
      out.sgx_components[i] = static_cast<uint8_t>(svn);
    }
  } else {
    PML_ASSIGN_OR_RETURN(out.sgx_components, ReadComponents(tcb, "sgxtcbcomponents"));
    if (tdx) {
      PML_ASSIGN_OR_RETURN(auto tdx_comps, ReadComponents(tcb, "tdxtcbcomponents"));
      out.tdx_components = tdx_comps;
    }
  }
  PML_ASSIGN_OR_RETURN(int64_t pce, tcb.Int("pcesvn", 0, 0xffff));
  out.pce_svn = static_cast<uint16_t>(pce);
  PML_ASSIGN_OR_RETURN(out.tcb_date, ReadTime(level, "tcbDate", &out.tcb_date_text));
  PML_ASSIGN_OR_RETURN(std::string status, level.String("tcbStatus"));
  PML_ASSIGN_OR_RETURN(out.status, ParseTcbStatus(status));
  PML_ASSIGN_OR_RETURN(out.advisory_ids, ReadAdvisories(level));
  return out;
}

int Digits(absl::string_view s, size_t pos, size_t n, bool* ok) {
  int v = 0;
  if (pos + n > s.size()) {
    *ok = false;
    return 0;
  }
  for (size_t i = pos; i < pos + n; ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      *ok = false;
      return 0;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

absl::string_view TcbStatusName(TcbStatus status) {
  switch (status) {
    case TcbStatus::kUpToDate:
      return "UpToDate";
    case TcbStatus::kSWHardeningNeeded:
      return "SWHardeningNeeded";
    case TcbStatus::kConfigurationNeeded:
      return "ConfigurationNeeded";
    case TcbStatus::kConfigurationAndSWHardeningNeeded:
      return "ConfigurationAndSWHardeningNeeded";
    case TcbStatus::kOutOfDate:
      return "OutOfDate";
    case TcbStatus::kOutOfDateConfigurationNeeded:
      return "OutOfDateConfigurationNeeded";
    case TcbStatus::kRevoked:
      return "Revoked";
    case TcbStatus::kTDRelaunchAdvised:
      return "TDRelaunchAdvised";
    case TcbStatus::kTDRelaunchAdvisedConfigurationNeeded:
      return "TDRelaunchAdvisedConfigurationNeeded";
  }
  return "Unknown";
}

absl::StatusOr<TcbStatus> ParseTcbStatus(absl::string_view text) {
  static constexpr TcbStatus kCollateralStatuses[] = {
      TcbStatus::kUpToDate,          TcbStatus::kSWHardeningNeeded,
      TcbStatus::kConfigurationNeeded, TcbStatus::kConfigurationAndSWHardeningNeeded,
      TcbStatus::kOutOfDate,         TcbStatus::kOutOfDateConfigurationNeeded,
      TcbStatus::kRevoked};
  for (TcbStatus s : kCollateralStatuses) {
    if (TcbStatusName(s) == text) return s;
  }
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kTcbUnrecognizedStatus,
                   absl::StrCat("tcb status \"", text.substr(0, 64), "\" is not recognized"));
}

absl::StatusOr<absl::Time> ParseIntelTime(absl::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fff][Z|+00:00]
  bool ok = s.size() >= 19 && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') &&
            s[13] == ':' && s[16] == ':';
  const int year = Digits(s, 0, 4, &ok);
  const int month = Digits(s, 5, 2, &ok);
  const int day = Digits(s, 8, 2, &ok);
  const int hour = Digits(s, 11, 2, &ok);
  const int minute = Digits(s, 14, 2, &ok);
  const int second = Digits(s, 17, 2, &ok);
  size_t pos = 19;
  if (ok && pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    ok = pos > start && pos - start <= 9;
  }
  const absl::string_view zone = ok ? s.substr(pos) : "";
  ok = ok && (zone == "Z" || zone == "z" || zone == "+00:00");
  ok = ok && month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 &&
       second <= 60;
  if (ok) {
    const absl::CivilSecond cs(year, month, day, hour, minute, second);
    // CivilSecond normalizes out-of-range fields (Feb 30 -> Mar 2); reject those.
    ok = cs.year() == year && cs.month() == month && cs.day() == day;
    if (ok) return absl::FromCivil(cs, absl::UTCTimeZone());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("time \"", s.substr(0, 40), "\" is not an ISO 8601 UTC timestamp"));
}

absl::StatusOr<TcbInfo> ParseTcbInfo(absl::string_view body_json) {
  const absl::string_view cls = error_class::kTcbInfoUnsupportedFormat;
  if (body_json.size() > kMaxBodySize) {
    return MakeError(absl::StatusCode::kInvalidArgument, cls, "tcb info body is too large");
  }
  PML_ASSIGN_OR_RETURN(JsonReader root, JsonReader::Parse(body_json, cls, "tcbInfo"));
  TcbInfo info;
  PML_ASSIGN_OR_RETURN(int64_t version, root.Int("version", 0, 100));
  info.version = static_cast<int>(version);
  if (info.version != 2 && info.version != 3) {
    return root.Error(absl::StrCat("tcb info version ", info.version, " is not supported"));
  }
  if (info.version == 3) {
    PML_ASSIGN_OR_RETURN(info.id, root.String("id"));
    if (info.id != "SGX" && info.id != "TDX") {
      return root.Error(absl::StrCat("id \"", info.id.substr(0, 16), "\" is not SGX or TDX"));
    }
  } else {
    info.id = "SGX";
  }
  PML_ASSIGN_OR_RETURN(info.issue_date, ReadTime(root, "issueDate"));
  PML_ASSIGN_OR_RETURN(info.next_update, ReadTime(root, "nextUpdate"));
  PML_ASSIGN_OR_RETURN(info.fmspc, root.HexArray<6>("fmspc"));
  PML_ASSIGN_OR_RETURN(info.pce_id, root.HexArray<2>("pceId"));
  PML_ASSIGN_OR_RETURN(int64_t tcb_type, root.Int("tcbType", 0, 0xffff));
  info.tcb_type = static_cast<int>(tcb_type);
  PML_ASSIGN_OR_RETURN(info.tcb_evaluation_data_number,
                       root.Int("tcbEvaluationDataNumber", 0, int64_t{1} << 32));
  const bool tdx = info.is_tdx();
  if (tdx) {
    PML_ASSIGN_OR_RETURN(JsonReader m, root.Object("tdxModule"));
    PML_ASSIGN_OR_RETURN(TdxModule module, ReadTdxModule(m));
    info.tdx_module = module;
    if (root.Has("tdxModuleIdentities")) {
      PML_ASSIGN_OR_RETURN(std::vector<JsonReader> ids, root.Array("tdxModuleIdentities", 64));
      for (const JsonReader& id : ids) {
        TdxModuleIdentity mi;
        PML_ASSIGN_OR_RETURN(mi.id, id.String("id"));
        PML_ASSIGN_OR_RETURN(mi.module, ReadTdxModule(id));
        PML_ASSIGN_OR_RETURN(std::vector<JsonReader> levels, id.Array("tcbLevels", kMaxLevels));
        for (const JsonReader& l : levels) {
          PML_ASSIGN_OR_RETURN(IsvTcbLevel level, ReadIsvLevel(l, /*module_level=*/true));
          mi.tcb_levels.push_back(std::move(level));
        }
        info.tdx_module_identities.push_back(std::move(mi));
      }
    }
  }
  PML_ASSIGN_OR_RETURN(std::vector<JsonReader> levels, root.Array("tcbLevels", kMaxLevels));
  if (levels.empty()) return root.Error("tcbLevels is empty");
  for (const JsonReader& l : levels) {
    PML_ASSIGN_OR_RETURN(TcbLevel level, ReadTcbLevel(l, info.version, tdx));
    info.tcb_levels.push_back(std::move(level));
  }
  return info;
}

absl::StatusOr<QeIdentity> ParseQeIdentity(absl::string_view body_json) {
  const absl::string_view cls = error_class::kQeIdentityUnsupportedFormat;
  if (body_json.size() > kMaxBodySize) {
    return MakeError(absl::StatusCode::kInvalidArgument, cls, "enclave identity body is too large");
  }
  PML_ASSIGN_OR_RETURN(JsonReader root, JsonReader::Parse(body_json, cls, "enclaveIdentity"));
  QeIdentity qe;
  PML_ASSIGN_OR_RETURN(qe.id, root.String("id"));
  PML_ASSIGN_OR_RETURN(int64_t version, root.Int("version", 0, 100));
  qe.version = static_cast<int>(version);
  if (qe.version != 2) {
    return root.Error(absl::StrCat("enclave identity version ", qe.version,
                                   " is not supported (want 2)"));
  }
  PML_ASSIGN_OR_RETURN(qe.issue_date, ReadTime(root, "issueDate"));
  PML_ASSIGN_OR_RETURN(qe.next_update, ReadTime(root, "nextUpdate"));
  PML_ASSIGN_OR_RETURN(qe.tcb_evaluation_data_number,
                       root.Int("tcbEvaluationDataNumber", 0, int64_t{1} << 32));
  PML_ASSIGN_OR_RETURN(auto misc, root.HexArray<4>("miscselect"));
  PML_ASSIGN_OR_RETURN(auto misc_mask, root.HexArray<4>("miscselectMask"));
  // The hex is the big-endian u32 (QVL vectorToUint32), §5 step 10.
  auto be32 = [](const std::array<uint8_t, 4>& b) {
    return static_cast<uint32_t>(b[0]) << 24 | static_cast<uint32_t>(b[1]) << 16 |
           static_cast<uint32_t>(b[2]) << 8 | static_cast<uint32_t>(b[3]);
  };
  qe.misc_select = be32(misc);
  qe.misc_select_mask = be32(misc_mask);
  PML_ASSIGN_OR_RETURN(qe.attributes, root.HexArray<16>("attributes"));
  PML_ASSIGN_OR_RETURN(qe.attributes_mask, root.HexArray<16>("attributesMask"));
  PML_ASSIGN_OR_RETURN(qe.mr_signer, root.HexArray<32>("mrsigner"));
  PML_ASSIGN_OR_RETURN(int64_t prod, root.Int("isvprodid", 0, 0xffff));
  qe.isv_prod_id = static_cast<uint16_t>(prod);
  PML_ASSIGN_OR_RETURN(std::vector<JsonReader> levels, root.Array("tcbLevels", kMaxLevels));
  if (levels.empty()) return root.Error("tcbLevels is empty");
  for (const JsonReader& l : levels) {
    PML_ASSIGN_OR_RETURN(IsvTcbLevel level, ReadIsvLevel(l, /*module_level=*/false));
    qe.tcb_levels.push_back(std::move(level));
  }
  return qe;
}

}  // namespace pml::tdx
