#include "services/guest-agent/dstack_api.h"

#include <algorithm>
#include <iterator>
#include <optional>
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

absl::StatusOr<bool> Bool(const Json& j, const char* name, bool dflt) {
  if (!j.contains(name) || j[name].is_null())
    return dflt;
  if (!j[name].is_boolean())
    return absl::InvalidArgumentError(absl::StrCat(name, ": want true or false"));
  return j[name].get<bool>();
}

absl::StatusOr<std::vector<std::string>> StrList(const Json& j, const char* name) {
  std::vector<std::string> out;
  if (!j.contains(name) || j[name].is_null())
    return out;
  if (!j[name].is_array())
    return absl::InvalidArgumentError(absl::StrCat(name, ": want an array of strings"));
  for (const auto& v : j[name]) {
    if (!v.is_string())
      return absl::InvalidArgumentError(absl::StrCat(name, ": want an array of strings"));
    out.push_back(v.get<std::string>());
  }
  return out;
}

// Unix seconds (dstack's not_before / not_after), nullopt when absent.
absl::StatusOr<std::optional<absl::Time>> UnixTime(const Json& j, const char* name) {
  if (!j.contains(name) || j[name].is_null())
    return std::optional<absl::Time>();
  if (!j[name].is_number_unsigned() || j[name].get<uint64_t>() > 253402300799ull)
    return absl::InvalidArgumentError(absl::StrCat(name, ": want Unix seconds (0..9999-12-31)"));
  return std::optional<absl::Time>(absl::FromUnixSeconds(j[name].get<int64_t>()));
}

absl::StatusOr<TlsKeyRequest> TlsRequest(const Json& j) {
  TlsKeyRequest r;
  PML_ASSIGN_OR_RETURN(r.subject, Str(j, "subject"));
  PML_ASSIGN_OR_RETURN(r.alt_names, StrList(j, "alt_names"));
  PML_ASSIGN_OR_RETURN(r.usage_ra_tls, Bool(j, "usage_ra_tls", false));
  PML_ASSIGN_OR_RETURN(r.usage_server_auth, Bool(j, "usage_server_auth", true));
  PML_ASSIGN_OR_RETURN(r.usage_client_auth, Bool(j, "usage_client_auth", false));
  PML_ASSIGN_OR_RETURN(r.with_app_info, Bool(j, "with_app_info", false));
  PML_ASSIGN_OR_RETURN(r.not_before, UnixTime(j, "not_before"));
  PML_ASSIGN_OR_RETURN(r.not_after, UnixTime(j, "not_after"));
  return r;
}

Json TlsReply(const TlsKeyResult& t) {
  return Json{{"key", std::string(t.key_pem.span().begin(), t.key_pem.span().end())},
              {"certificate_chain", t.certificate_chain}};
}

// `s` as a JSON string. The agent's strings are valid UTF-8 (the event log is its own compact
// JSON, vm_config is sanitized when the core is built), so only '"', '\\' and control characters
// need escaping; this avoids nlohmann's per-byte UTF-8 check on the ~10 KB of every quote answer.
void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c != '"' && c != '\\' && c >= 0x20)
      continue;
    out.append(s.data() + start, i - start);
    if (c == '"') {
      out.append("\\\"");
    } else if (c == '\\') {
      out.append("\\\\");
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
    start = i + 1;
  }
  out.append(s.data() + start, s.size() - start);
  out.push_back('"');
}

// The /GetQuote answer, built directly (the hot path of the API).
std::string QuoteJsonText(const QuoteResult& q) {
  std::string out;
  out.reserve(2 * q.quote.size() + q.event_log.size() + q.vm_config.size() + 256);
  out.append("{\"event_log\":");
  AppendJsonString(out, q.event_log);
  out.append(",\"quote\":\"");
  out.append(core::HexEncode(q.quote));
  out.append("\",\"report_data\":\"");
  out.append(core::HexEncode(q.report_data));
  out.append("\",\"vm_config\":");
  AppendJsonString(out, q.vm_config);
  out.push_back('}');
  return out;
}

absl::StatusOr<Json> Info(const AgentCore& core) {
  PML_ASSIGN_OR_RETURN(InfoResult r, core.Info());
  const AgentIdentity& id = core.identity();
  return Json{{"app_id", core::HexEncode(id.app_id)},
              {"instance_id", core::HexEncode(id.instance_id)},
              {"app_cert", r.app_cert_pem},
              {"tcb_info", r.tcb_info_json},
              {"app_name", id.app_name},
              {"device_id", core::HexEncode(id.device_id)},
              {"mr_aggregated", core::HexEncode(r.mr_aggregated)},
              {"os_image_hash", core::HexEncode(id.os_image_hash)},
              {"key_provider_info", id.key_provider_info},
              {"compose_hash", core::HexEncode(id.compose_hash)},
              {"vm_config", id.vm_config},
              {"cloud_vendor", ""},
              {"cloud_product", ""},
              {"tee", id.tee_kind},
              {"simulated", core.simulated()}};
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

// The key-free methods: what anyone who can reach the guest may ask (as the gRPC API's viewer
// role). Deny by default: a method added to Handle stays off the TCP listener until listed here.
constexpr absl::string_view kPublicPaths[] = {
    "/GetQuote", "/Attest", "/Info", "/Version", "/prpc/Tappd.TdxQuote", "/prpc/Tappd.Info"};

}  // namespace

bool DstackApi::IsPublicPath(absl::string_view path) {
  return std::find(std::begin(kPublicPaths), std::end(kPublicPaths), path) !=
         std::end(kPublicPaths);
}

HttpResponse DstackApi::HandlePublic(const HttpRequest& req) const {
  if (IsPublicPath(req.path))
    return Handle(req);
  const std::string message = absl::StrCat(
      req.path.substr(0, 64),
      " is not served on the TCP listener: key material never leaves the guest; use the unix "
      "socket");
  // The path is the client's bytes: replace invalid UTF-8 rather than fail to encode.
  return {403, "application/json",
          Json{{"error", message}}.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

HttpResponse DstackApi::Handle(const HttpRequest& req) const {
  if (req.method != "POST" && req.method != "GET")
    return {405, "application/json", R"({"error":"use POST"})"};
  auto body = ParseBody(req.body);
  if (!body.ok())
    return Error(body.status());
  const Json& j = *body;
  const std::string& p = req.path;
  if (p == "/GetQuote" || p == "/prpc/Tappd.RawQuote") {
    absl::StatusOr<std::vector<uint8_t>> rd = HexField(j, "report_data", 64);
    if (!rd.ok())
      return Error(rd.status());
    absl::StatusOr<QuoteResult> q = core_.GetQuote(*rd);
    if (!q.ok())
      return Error(q.status());
    return {200, "application/json", QuoteJsonText(*q)};
  }
  auto run = [&]() -> absl::StatusOr<Json> {
    if (p == "/prpc/Tappd.TdxQuote") {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> data, HexField(j, "report_data", 1 << 16));
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "hash_algorithm"));
      PML_ASSIGN_OR_RETURN(std::string prefix, Str(j, "prefix"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> rd, TappdReportData(data, algorithm, prefix));
      PML_ASSIGN_OR_RETURN(QuoteResult q, core_.GetQuote(rd));
      return Json{{"quote", core::HexEncode(q.quote)},
                  {"event_log", q.event_log},
                  {"hash_algorithm", algorithm.empty() ? "sha512" : algorithm},
                  {"prefix", algorithm == "raw" ? "" : (prefix.empty() ? "app-data" : prefix)}};
    }
    if (p == "/GetKey") {
      PML_ASSIGN_OR_RETURN(std::string path, Str(j, "path"));
      PML_ASSIGN_OR_RETURN(std::string purpose, Str(j, "purpose"));
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "algorithm"));
      PML_ASSIGN_OR_RETURN(DerivedKey k, core_.keys().GetKey(path, purpose, algorithm));
      return Json{{"key", core::HexEncode(k.private_key.span())},
                  {"signature_chain", HexList(k.signature_chain)}};
    }
    if (p == "/Info" || p == "/prpc/Tappd.Info")
      return Info(core_);
    if (p == "/EmitEvent") {
      PML_ASSIGN_OR_RETURN(std::string event, Str(j, "event"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> payload,
                           HexField(j, "payload", kMaxRuntimeEventPayloadBytes));
      PML_RETURN_IF_ERROR(core_.EmitEvent(event, payload));
      return Json::object();
    }
    if (p == "/Sign") {
      PML_ASSIGN_OR_RETURN(std::string algorithm, Str(j, "algorithm"));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> data, HexField(j, "data", 1 << 16));
      PML_ASSIGN_OR_RETURN(SignResult s, core_.keys().Sign(algorithm, data));
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
      return Json{{"version", core_.identity().version}, {"rev", ""}};
    if (p == "/GetTlsKey") {
      PML_ASSIGN_OR_RETURN(TlsKeyRequest r, TlsRequest(j));
      PML_ASSIGN_OR_RETURN(TlsKeyResult t, core_.GetTlsKey(r));
      return TlsReply(t);
    }
    if (p == "/prpc/Tappd.DeriveKey") {
      // Legacy: the key is derived from the app key for `path` (random with random_seed).
      PML_ASSIGN_OR_RETURN(TlsKeyRequest r, TlsRequest(j));
      PML_ASSIGN_OR_RETURN(std::string path, Str(j, "path"));
      PML_ASSIGN_OR_RETURN(bool random, Bool(j, "random_seed", false));
      if (!random)
        r.derive_path = path;
      if (r.subject.empty())
        r.subject = path;
      PML_ASSIGN_OR_RETURN(TlsKeyResult t, core_.GetTlsKey(r));
      return TlsReply(t);
    }
    if (p == "/Attest") {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> rd, HexField(j, "report_data", 64));
      PML_ASSIGN_OR_RETURN(bool skip_gpu, Bool(j, "skip_gpu_evidence", false));
      PML_ASSIGN_OR_RETURN(common::v1::EvidenceBundle b, core_.Attest(rd, skip_gpu));
      return Json{{"attestation", core::HexEncode(core::AsBytes(b.SerializeAsString()))},
                  {"format", "pml.common.v1.EvidenceBundle"},
                  {"simulated", b.simulated()},
                  {"gpus", b.gpus_size()}};
    }
    return absl::NotFoundError(absl::StrCat("no such method: ", p.substr(0, 64)));
  };
  auto result = run();
  if (!result.ok())
    return Error(result.status());
  return JsonReply(*result);
}

}  // namespace pml::guest
