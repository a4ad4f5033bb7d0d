#include "services/guest-agent/dstack_api.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/tdx/quote.h"

namespace pml::guest {
namespace {

using Json = nlohmann::json;

HttpResponse JsonReply(const Json& j) { return {200, "application/json", j.dump()}; }

HttpResponse Error(const absl::Status& s) {
  int code = 500;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      code = 400;
      break;
    case absl::StatusCode::kNotFound:
      code = 404;
      break;
    case absl::StatusCode::kUnimplemented:
      code = 501;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
      code = 503;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = 409;
      break;
    default:
      break;
  }
  // Internal details stay in the agent's log; the client gets the class of failure.
  const std::string message =
      code == 500 ? std::string("internal error") : std::string(s.message());
  return {code, "application/json", Json{{"error", message}}.dump()};
}

absl::StatusOr<Json> ParseBody(const std::string& body) {
  if (absl::StripAsciiWhitespace(body).empty())
    return Json::object();
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("the request body is not a JSON object");
  return j;
}

// A string field ("" when absent); kInvalidArgument when present and not a string.
absl::StatusOr<std::string> Str(const Json& j, const char* name) {
  if (!j.contains(name) || j[name].is_null())
    return std::string();
  if (!j[name].is_string())
    return absl::InvalidArgumentError(absl::StrCat(name, ": want a string"));
  return j[name].get<std::string>();
}

absl::StatusOr<std::vector<uint8_t>> HexField(const Json& j, const char* name, size_t max_bytes) {
  PML_ASSIGN_OR_RETURN(std::string text, Str(j, name));
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
    text.erase(0, 2);
  if (text.size() > 2 * max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", text.size() / 2, " bytes, at most ", max_bytes));
  }
  auto bytes = core::HexDecode(text);
  if (!bytes.ok())
    return absl::InvalidArgumentError(absl::StrCat(name, ": not hex"));
  return *bytes;
}

std::vector<std::string> HexList(const std::vector<std::vector<uint8_t>>& list) {
  std::vector<std::string> out;
  for (const auto& b : list)
    out.push_back(core::HexEncode(b));
  return out;
}

// The boot log (RTMR0-2) followed by the runtime log (RTMR3), as one dstack JSON array.
std::string FullLog(const std::string& boot_json, const std::string& runtime_json) {
  Json all = Json::parse(boot_json, nullptr, false);
  if (!all.is_array())
    all = Json::array();
  Json rt = Json::parse(runtime_json, nullptr, false);
  if (rt.is_array()) {
    for (auto& e : rt)
      all.push_back(std::move(e));
  }
  return all.dump();
}

struct QuoteReply {
  std::vector<uint8_t> quote;
  std::string event_log;
  std::vector<uint8_t> report_data;
};

absl::StatusOr<QuoteReply> Quote(RuntimeEventLog& log, const AgentIdentity& id,
                                 std::vector<uint8_t> report_data) {
  if (report_data.size() > 64)
    return absl::InvalidArgumentError("report_data: more than 64 bytes");
  report_data.resize(64, 0);
  PML_ASSIGN_OR_RETURN(QuoteAndLog q, log.GetQuoteAndLog(report_data));
  return QuoteReply{std::move(q.quote), FullLog(id.boot_log_json, q.runtime_log_json),
                    std::move(report_data)};
}

absl::StatusOr<Json> Info(RuntimeEventLog& log, const AgentIdentity& id) {
  // The registers as a fresh quote states them (the TEE's own view).
  PML_ASSIGN_OR_RETURN(QuoteReply q, Quote(log, id, {}));
  PML_ASSIGN_OR_RETURN(tdx::Quote parsed, tdx::ParseQuote(q.quote));
  if (!parsed.td_report.has_value())
    return absl::InternalError("the TEE returned a quote without a TD report");
  const tdx::TdReport& td = *parsed.td_report;
  // dstack mr_aggregated: SHA-256(MRTD ‖ RTMR0..3 [‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG]).
  std::string agg;
  auto add = [&agg](const tdx::Bytes48& b) { agg.append(b.begin(), b.end()); };
  add(td.mr_td);
  for (const auto& r : td.rtmr)
    add(r);
  auto zero = [](const tdx::Bytes48& b) {
    return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
  };
  if (!zero(td.mr_config_id) || !zero(td.mr_owner) || !zero(td.mr_owner_config)) {
    add(td.mr_config_id);
    add(td.mr_owner);
    add(td.mr_owner_config);
  }
  const std::string mr_aggregated = core::HexEncode(crypto::Sha256(agg));
  Json tcb = {{"mrtd", core::HexEncode(td.mr_td)},
              {"rtmr0", core::HexEncode(td.rtmr[0])},
              {"rtmr1", core::HexEncode(td.rtmr[1])},
              {"rtmr2", core::HexEncode(td.rtmr[2])},
              {"rtmr3", core::HexEncode(td.rtmr[3])},
              {"mr_aggregated", mr_aggregated},
              {"os_image_hash", core::HexEncode(id.os_image_hash)},
              {"compose_hash", core::HexEncode(id.compose_hash)},
              {"device_id", core::HexEncode(id.device_id)},
              {"event_log", Json::parse(q.event_log, nullptr, false)},
              {"app_compose", id.app_compose}};
  return Json{{"app_id", core::HexEncode(id.app_id)},
              {"instance_id", core::HexEncode(id.instance_id)},
              {"app_cert", ""},
              {"tcb_info", tcb.dump()},
              {"app_name", id.app_name},
              {"device_id", core::HexEncode(id.device_id)},
              {"mr_aggregated", mr_aggregated},
              {"os_image_hash", core::HexEncode(id.os_image_hash)},
              {"key_provider_info", id.key_provider_info},
              {"compose_hash", core::HexEncode(id.compose_hash)},
              {"vm_config", id.vm_config},
              {"cloud_vendor", ""},
              {"cloud_product", ""},
              {"tee", id.tee_kind},
              {"simulated", id.tee_kind == "simulated"}};
}

// Tappd's report data: H(prefix ":" data) for the named hash, or the raw bytes.
absl::StatusOr<std::vector<uint8_t>> TappdReportData(const std::vector<uint8_t>& data,
                                                     std::string algorithm, std::string prefix) {
  if (algorithm.empty())
    algorithm = "sha512";
  if (algorithm == "raw") {
    if (data.size() > 64)
      return absl::InvalidArgumentError("report_data: more than 64 bytes with raw");
    return data;
  }
  if (prefix.empty())
    prefix = "app-data";
  std::string input = absl::StrCat(prefix, ":");
  input.append(data.begin(), data.end());
  if (algorithm == "sha256") {
    auto d = crypto::Sha256(input);
    return std::vector<uint8_t>(d.begin(), d.end());
  }
  if (algorithm == "sha384") {
    auto d = crypto::Sha384(input);
    return std::vector<uint8_t>(d.begin(), d.end());
  }
  if (algorithm == "sha512") {
    auto d = crypto::Sha512(input);
    return std::vector<uint8_t>(d.begin(), d.end());
  }
  if (algorithm == "keccak256") {
    auto d = Keccak256(core::AsBytes(input));
    return std::vector<uint8_t>(d.begin(), d.end());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("hash_algorithm: \"", algorithm.substr(0, 32),
                   "\" is not supported (raw, sha256, sha384, sha512, keccak256)"));
}

}  // namespace

HttpResponse DstackApi::Handle(const HttpRequest& req) const {
  if (req.method != "POST" && req.method != "GET")
    return {405, "application/json", R"({"error":"use POST"})"};
  auto body = ParseBody(req.body);
  if (!body.ok())
    return Error(body.status());
  const Json& j = *body;
  const std::string& p = req.path;
  auto run = [&]() -> absl::StatusOr<Json> {
    if (p == "/GetQuote" || p == "/prpc/Tappd.RawQuote") {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> rd, HexField(j, "report_data", 64));
      PML_ASSIGN_OR_RETURN(QuoteReply q, Quote(log_, identity_, std::move(rd)));
      return Json{{"quote", core::HexEncode(q.quote)},
                  {"event_log", q.event_log},
                  {"report_data", core::HexEncode(q.report_data)},
                  {"vm_config", identity_.vm_config}};
    }
    if (p == "/prpc/Tappd.TdxQuote") {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> data, HexField(j, "report_data", 1 << 16));
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "hash_algorithm"));
      PML_ASSIGN_OR_RETURN(std::string prefix, Str(j, "prefix"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> rd, TappdReportData(data, algorithm, prefix));
      PML_ASSIGN_OR_RETURN(QuoteReply q, Quote(log_, identity_, std::move(rd)));
      return Json{{"quote", core::HexEncode(q.quote)},
                  {"event_log", q.event_log},
                  {"hash_algorithm", algorithm.empty() ? "sha512" : algorithm},
                  {"prefix", algorithm == "raw" ? "" : (prefix.empty() ? "app-data" : prefix)}};
    }
    if (p == "/GetKey") {
      PML_ASSIGN_OR_RETURN(std::string path, Str(j, "path"));
      PML_ASSIGN_OR_RETURN(std::string purpose, Str(j, "purpose"));
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "algorithm"));
      PML_ASSIGN_OR_RETURN(DerivedKey k, keys_.GetKey(path, purpose, algorithm));
      return Json{{"key", core::HexEncode(k.private_key.span())},
                  {"signature_chain", HexList(k.signature_chain)}};
    }
    if (p == "/Info" || p == "/prpc/Tappd.Info")
      return Info(log_, identity_);
    if (p == "/EmitEvent") {
      PML_ASSIGN_OR_RETURN(std::string event, Str(j, "event"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> payload,
                           HexField(j, "payload", kMaxRuntimeEventPayloadBytes));
      PML_RETURN_IF_ERROR(log_.Emit(event, payload));
      return Json::object();
    }
    if (p == "/Sign") {
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "algorithm"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> data, HexField(j, "data", 1 << 16));
      PML_ASSIGN_OR_RETURN(SignResult s, keys_.Sign(algorithm, data));
      return Json{{"signature", core::HexEncode(s.signature)},
                  {"signature_chain", HexList(s.signature_chain)},
                  {"public_key", core::HexEncode(s.public_key)}};
    }
    if (p == "/Verify") {
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "algorithm"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> data, HexField(j, "data", 1 << 16));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig, HexField(j, "signature", 1024));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> pub, HexField(j, "public_key", 1024));
      PML_ASSIGN_OR_RETURN(bool valid, AppKeys::Verify(algorithm, data, sig, pub));
      return Json{{"valid", valid}};
    }
    if (p == "/Version")
      return Json{{"version", identity_.version}, {"rev", ""}};
    if (p == "/GetTlsKey" || p == "/Attest" || p == "/prpc/Tappd.DeriveKey") {
      return absl::UnimplementedError(
          absl::StrCat(p, " is not served yet (pml guest agent, issue 6: needs the app CA)"));
    }
    return absl::NotFoundError(absl::StrCat("no such method: ", p.substr(0, 64)));
  };
  auto result = run();
  if (!result.ok())
    return Error(result.status());
  return JsonReply(*result);
}

}  // namespace pml::guest
