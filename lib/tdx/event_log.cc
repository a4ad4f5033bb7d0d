#include "lib/tdx/event_log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"

namespace pml::tdx {
namespace {

using Json = nlohmann::json;

absl::Status EntryError(size_t i, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("event log entry ", i, " ", field, ": ", what));
}

absl::StatusOr<uint64_t> Unsigned(const Json& e, size_t i, const char* field, uint64_t max) {
  auto it = e.find(field);
  if (it == e.end()) return EntryError(i, field, "missing");
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0)) {
    return EntryError(i, field, "not a non-negative integer");
  }
  const uint64_t v = it->get<uint64_t>();
  if (v > max) return EntryError(i, field, absl::StrCat("value ", v, " out of range"));
  return v;
}

absl::StatusOr<std::string> Text(const Json& e, size_t i, const char* field, size_t max,
                                 bool required) {
  auto it = e.find(field);
  if (it == e.end() || it->is_null()) {
    if (required) return EntryError(i, field, "missing");
    return std::string();
  }
  if (!it->is_string()) return EntryError(i, field, "not a string");
  const std::string& s = it->get_ref<const std::string&>();
  if (s.size() > max) return EntryError(i, field, absl::StrCat("longer than ", max, " bytes"));
  return s;
}

}  // namespace

Bytes48 RuntimeEventDigest(absl::string_view name, absl::Span<const uint8_t> payload) {
  const uint8_t type_le[4] = {
      static_cast<uint8_t>(kDstackRuntimeEventType & 0xff),
      static_cast<uint8_t>((kDstackRuntimeEventType >> 8) & 0xff),
      static_cast<uint8_t>((kDstackRuntimeEventType >> 16) & 0xff),
      static_cast<uint8_t>((kDstackRuntimeEventType >> 24) & 0xff)};
  const uint8_t colon[1] = {':'};
  return crypto::Sha384Concat({absl::MakeConstSpan(type_le), absl::MakeConstSpan(colon),
                               core::AsBytes(name), absl::MakeConstSpan(colon), payload});
}

Bytes48 ExtendRtmr(const Bytes48& rtmr, const Bytes48& digest) {
  return crypto::Sha384Concat({absl::MakeConstSpan(rtmr), absl::MakeConstSpan(digest)});
}

absl::StatusOr<EventLog> ParseEventLog(absl::string_view json) {
  if (json.size() > kMaxEventLogBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event log has ", json.size(), " bytes, more than ", kMaxEventLogBytes));
  }
  const Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) {
    return absl::InvalidArgumentError("event log is not a json array");
  }
  if (j.size() > kMaxEventLogEntries) {
    return absl::InvalidArgumentError(absl::StrCat("event log has ", j.size(),
                                                   " entries, more than ", kMaxEventLogEntries));
  }
  EventLog log;
  log.entries.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& e = j[i];
    if (!e.is_object()) return EntryError(i, "", "not an object");
    EventLogEntry entry;
    PML_ASSIGN_OR_RETURN(uint64_t imr, Unsigned(e, i, "imr", 3));
    entry.imr = static_cast<uint32_t>(imr);
    PML_ASSIGN_OR_RETURN(uint64_t type, Unsigned(e, i, "event_type", 0xffffffffu));
    entry.event_type = static_cast<uint32_t>(type);
    PML_ASSIGN_OR_RETURN(entry.event, Text(e, i, "event", kMaxEventNameBytes, false));
    PML_ASSIGN_OR_RETURN(std::string payload_hex,
                         Text(e, i, "event_payload", 2 * kMaxEventPayloadBytes, false));
    auto payload = core::HexDecode(payload_hex);
    if (!payload.ok()) return EntryError(i, "event_payload", payload.status().message());
    entry.payload = std::move(payload).value();
    PML_ASSIGN_OR_RETURN(std::string digest_hex, Text(e, i, "digest", 96, false));

    const bool runtime = entry.event_type == kDstackRuntimeEventType;
    if (runtime) {
      entry.digest = RuntimeEventDigest(entry.event, entry.payload);
      entry.digest_verified = true;
    }
    if (!digest_hex.empty()) {
      auto digest = core::HexDecode(digest_hex);
      if (!digest.ok()) return EntryError(i, "digest", digest.status().message());
      if (digest->size() != entry.digest.size()) {
        return EntryError(i, "digest", absl::StrCat("has ", digest->size(), " bytes, want 48"));
      }
      if (runtime) {
        if (!std::equal(digest->begin(), digest->end(), entry.digest.begin())) {
          return EntryError(i, "digest",
                            absl::StrCat("does not match runtime event \"",
                                         entry.event.substr(0, 64), "\" and its payload"));
        }
      } else {
        std::copy(digest->begin(), digest->end(), entry.digest.begin());
      }
    } else if (!runtime) {
      return EntryError(i, "digest", "missing (only runtime events may omit it)");
    }
    log.entries.push_back(std::move(entry));
  }
  return log;
}

std::array<Bytes48, 4> ReplayRtmrs(const EventLog& log) {
  std::array<Bytes48, 4> rtmr{};
  for (const EventLogEntry& e : log.entries) {
    rtmr[e.imr] = ExtendRtmr(rtmr[e.imr], e.digest);
  }
  return rtmr;
}

RtmrReplay ReplayAgainst(const EventLog& log, const TdReport& td) {
  RtmrReplay out;
  out.rtmr = ReplayRtmrs(log);
  for (size_t i = 0; i < 4; ++i) out.matches[i] = out.rtmr[i] == td.rtmr[i];
  return out;
}

absl::Status CheckReplayMatches(const EventLog& log, const TdReport& td,
                                absl::Span<const int> registers) {
  const RtmrReplay r = ReplayAgainst(log, td);
  for (int i : registers) {
    if (i < 0 || i > 3) return absl::InvalidArgumentError(absl::StrCat("no rtmr ", i));
    if (!r.matches[static_cast<size_t>(i)]) {
      return absl::FailedPreconditionError(
          absl::StrCat("event log replays rtmr", i, " to ",
                       core::HexEncode(r.rtmr[static_cast<size_t>(i)]).substr(0, 32),
                       "..., the quote has ",
                       core::HexEncode(td.rtmr[static_cast<size_t>(i)]).substr(0, 32), "..."));
    }
  }
  return absl::OkStatus();
}

}  // namespace pml::tdx
