#include "tools/pmlctl/verify_cmd.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "lib/core/clock.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/tcb_info.h"
#include "lib/tdx/trust_anchors.h"
#include "lib/tdx/verify.h"
#include "tools/pmlctl/token_cmd.h"
#include "tools/pmlctl/verify_gpu_cmd.h"
// Only the simulated root's public key (a header constant): `verify quote` never uses the simulator
// (only `pmlctl dev simulated-collateral` links lib/tee).
#include "lib/tdx/simulated_anchor.h"

namespace pml::pmlctl {
namespace {

using Json = nlohmann::json;

// A hex quote of the largest size ParseQuote accepts, with room for line breaks.
constexpr size_t kMaxQuoteFileBytes = 2 * tdx::kMaxQuoteSize + (1 << 16);

std::string Time(absl::Time t) {
  if (t == absl::InfinitePast()) {
    return "-inf";
  }
  if (t == absl::InfiniteFuture()) {
    return "+inf";
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

template <typename C>
std::string Hex(const C& c) {
  return core::HexEncode(absl::Span<const uint8_t>(c.data(), c.size()));
}

std::string FmspcHex(const tdx::Fmspc& f) { return absl::AsciiStrToUpper(Hex(f)); }

absl::string_view AdvisorySourceName(tdx::AdvisorySource s) {
  switch (s) {
    case tdx::AdvisorySource::kTcbLevel:
      return "platform";
    case tdx::AdvisorySource::kTdxModule:
      return "tdx_module";
    case tdx::AdvisorySource::kQeIdentity:
      return "qe";
  }
  return "platform";
}

std::string QuoteKind(const tdx::Quote& q) {
  std::string body = "SGX enclave report";
  if (q.body_type == tdx::BodyType::kTdReport10) {
    body = "TD report 1.0";
  }
  if (q.body_type == tdx::BodyType::kTdReport15) {
    body = "TD report 1.5";
  }
  return absl::StrCat(q.is_tdx() ? "TDX" : "SGX", " quote v", q.header.version, " (", body, "), ",
                      q.raw.size(), " bytes");
}

// Collateral as given on the command line: one bundle, or a source to ask per FMSPC.
struct CollateralInput {
  std::optional<tdx::Collateral> collateral;
  std::unique_ptr<tdx::CollateralSource> source;
};

absl::StatusOr<CollateralInput> LoadCollateral(const std::string& path, const core::Clock& clock) {
  CollateralInput in;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    if (core::PathExists(absl::StrCat(path, "/tcb_info.json"))) {
      PML_ASSIGN_OR_RETURN(in.collateral, tdx::LoadCollateralDir(path));
      return in;
    }
    // A pml-verifier cache directory; never refreshed from here (offline).
    tdx::CacheDirOptions o;
    o.dir = path;
    PML_ASSIGN_OR_RETURN(in.source, tdx::MakeCacheDirSource(std::move(o), clock));
    return in;
  }
  PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path));
  if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(text), "[")) {
    PML_ASSIGN_OR_RETURN(in.source, tdx::MakeBundleFileSource(path));
    return in;
  }
  PML_ASSIGN_OR_RETURN(in.collateral, tdx::ParseCollateralJson(text));
  return in;
}

absl::StatusOr<tdx::TrustAnchors> Anchors(const VerifyQuoteOptions& o) {
  tdx::TrustAnchors anchors;
  if (o.trust_root.empty()) {
    anchors = tdx::TrustAnchors::IntelDefault();
  } else {
    PML_RETURN_IF_ERROR(anchors.AddFromFile(o.trust_root, o.trust_root, /*simulated=*/false));
  }
  if (o.trust_simulated_tee) {
    PML_RETURN_IF_ERROR(anchors.AddPublicKeyPem(tdx::kSimulatedTdxRootPublicKeyPem,
                                                "pml-simulated-tdx-root", /*simulated=*/true));
  }
  return anchors;
}

Json TdReportJson(const tdx::TdReport& td) {
  Json j;
  j["tee_tcb_svn"] = Hex(td.tee_tcb_svn);
  j["mrseam"] = Hex(td.mr_seam);
  j["mrsignerseam"] = Hex(td.mr_signer_seam);
  j["seam_attributes"] = absl::StrCat("0x", absl::Hex(td.seam_attributes, absl::kZeroPad16));
  j["td_attributes"] = absl::StrCat("0x", absl::Hex(td.td_attributes, absl::kZeroPad16));
  j["debug"] = (td.td_attributes & tdx::kTdAttributeDebug) != 0;
  j["xfam"] = absl::StrCat("0x", absl::Hex(td.xfam, absl::kZeroPad16));
  j["mrtd"] = Hex(td.mr_td);
  j["mrconfigid"] = Hex(td.mr_config_id);
  j["mrowner"] = Hex(td.mr_owner);
  j["mrownerconfig"] = Hex(td.mr_owner_config);
  for (int i = 0; i < 4; ++i) {
    j[absl::StrCat("rtmr", i)] = Hex(td.rtmr[i]);
  }
  j["report_data"] = Hex(td.report_data);
  if (td.tee_tcb_svn_2.has_value()) {
    j["tee_tcb_svn_2"] = Hex(*td.tee_tcb_svn_2);
  }
  if (td.mr_service_td.has_value()) {
    j["mrservicetd"] = Hex(*td.mr_service_td);
  }
  return j;
}

Json SgxReportJson(const tdx::EnclaveReport& r) {
  Json j;
  j["cpu_svn"] = Hex(r.cpu_svn);
  j["misc_select"] = r.misc_select;
  j["attributes"] = Hex(r.attributes);
  j["mrenclave"] = Hex(r.mr_enclave);
  j["mrsigner"] = Hex(r.mr_signer);
  j["isv_prod_id"] = r.isv_prod_id;
  j["isv_svn"] = r.isv_svn;
  j["report_data"] = Hex(r.report_data);
  return j;
}

// Everything the verdict reports, as JSON (the text form is printed from it).
Json ResultJson(const tdx::Quote& quote, absl::Time at, const absl::Status& failure,
                const std::optional<tdx::VerifiedQuote>& evaluation) {
  Json j;
  j["verified"] = failure.ok();
  j["error_class"] = tdx::ErrorClass(failure);
  j["error_message"] = std::string{failure.message()};
  j["verification_time"] = Time(at);
  j["quote"] = {{"version", quote.header.version},
                {"tee", quote.is_tdx() ? "tdx" : "sgx"},
                {"description", QuoteKind(quote)}};
  if (quote.td_report.has_value()) {
    j["td_report"] = TdReportJson(*quote.td_report);
  }
  if (quote.enclave_report.has_value()) {
    j["sgx_report"] = SgxReportJson(*quote.enclave_report);
  }
  j["collateral_expired"] = tdx::IsCollateralTimeError(failure);
  if (!evaluation.has_value()) {
    return j;
  }
  const tdx::VerifiedQuote& e = *evaluation;
  j["tcb_status"] = std::string{tdx::TcbStatusName(e.tcb_status())};
  j["advisory_ids"] = e.advisory_ids();
  Json advisories = Json::array();
  for (const tdx::Advisory& a : e.all_advisories()) {
    advisories.push_back({{"id", a.id}, {"source", std::string{AdvisorySourceName(a.source)}}});
  }
  j["advisories"] = advisories;
  j["tcb_date"] = Time(e.tcb_date());
  j["tcb_evaluation_data_number"] = e.tcb_evaluation_data_number();
  j["platform_tcb_status"] = std::string{tdx::TcbStatusName(e.tcb_level_status())};
  if (e.tdx_module_status().has_value()) {
    j["tdx_module_tcb_status"] = std::string{tdx::TcbStatusName(*e.tdx_module_status())};
  }
  j["qe_tcb_status"] = std::string{tdx::TcbStatusName(e.qe_tcb_status())};
  j["fmspc"] = FmspcHex(e.fmspc());
  j["pce_id"] = Hex(e.pck().pce_id);
  j["pck_ca"] = std::string{tdx::PckCaTypeName(e.pck_ca_type())};
  const tdx::CollateralWindow& w = e.collateral_window();
  j["collateral"] = {
      {"not_before", Time(w.not_before)},
      {"not_before_item", w.not_before_item},
      {"not_after", Time(w.not_after)},
      {"not_after_item", w.not_after_item},
      {"time_status", std::string{tdx::CollateralTimeStatusName(e.collateral_time_status())}}};
  j["collateral_expired"] = j["collateral_expired"].get<bool>() || e.collateral_expired();
  j["simulated"] = e.simulated();
  j["trust_anchor"] = e.trust_anchor_name();
  return j;
}

void PrintText(const Json& j, std::ostream& out) {
  const bool verified = j["verified"].get<bool>();
  auto line = [&](absl::string_view key, const std::string& value) {
    out << absl::StrCat(key, ":") << std::string(key.size() < 14 ? 14 - key.size() : 1, ' ')
        << value << "\n";
  };
  if (verified) {
    out << "VERIFIED  tcb_status=" << j["tcb_status"].get<std::string>() << "\n";
  } else {
    out << "REJECTED  error_class=" << j["error_class"].get<std::string>() << "\n";
    line("reason", j["error_message"].get<std::string>());
  }
  if (j.value("simulated", false)) {
    out << "SIMULATED: verified through the simulated root (--trust-simulated-tee); this proves "
           "nothing about the platform\n";
  }
  line("quote", j["quote"]["description"].get<std::string>());
  if (j.contains("tcb_status")) {
    line("tcb status", absl::StrCat(j["tcb_status"].get<std::string>(),
                                    verified ? "" : " (evaluated despite the collateral time)"));
    std::vector<std::string> ids;
    for (const Json& a : j["advisories"]) {
      ids.push_back(
          absl::StrCat(a["id"].get<std::string>(), " (", a["source"].get<std::string>(), ")"));
    }
    line("advisories", ids.empty() ? "none" : absl::StrJoin(ids, ", "));
    line("fmspc",
         absl::StrCat(j["fmspc"].get<std::string>(), "  pce id ", j["pce_id"].get<std::string>(),
                      "  pck ca ", j["pck_ca"].get<std::string>()));
    line("tcb date", absl::StrCat(j["tcb_date"].get<std::string>(), "  evaluation data number ",
                                  j["tcb_evaluation_data_number"].get<int64_t>()));
    const Json& c = j["collateral"];
    line("collateral", absl::StrCat(c["not_before"].get<std::string>(), " (",
                                    c["not_before_item"].get<std::string>(), ") .. ",
                                    c["not_after"].get<std::string>(), " (",
                                    c["not_after_item"].get<std::string>(), ")  ",
                                    c["time_status"].get<std::string>()));
    line("trust anchor", j["trust_anchor"].get<std::string>());
  }
  line("verified at", j["verification_time"].get<std::string>());
  if (j.contains("td_report")) {
    const Json& td = j["td_report"];
    line("mrtd", td["mrtd"].get<std::string>());
    for (int i = 0; i < 4; ++i) {
      const std::string k = absl::StrCat("rtmr", i);
      line(k, td[k].get<std::string>());
    }
    line("mrconfigid", td["mrconfigid"].get<std::string>());
    line("report_data", td["report_data"].get<std::string>());
    line("td attributes", absl::StrCat(td["td_attributes"].get<std::string>(),
                                       td["debug"].get<bool>() ? "  DEBUG TD" : ""));
  }
  if (j.contains("sgx_report")) {
    line("mrenclave", j["sgx_report"]["mrenclave"].get<std::string>());
    line("mrsigner", j["sgx_report"]["mrsigner"].get<std::string>());
    line("report_data", j["sgx_report"]["report_data"].get<std::string>());
  }
}

int Usage(std::ostream& err, absl::string_view what) {
  err << "pmlctl verify quote: error: " << what << "\n";
  return kVerifyExitUsage;
}

}  // namespace

absl::StatusOr<absl::Time> ParseVerifyTime(absl::string_view text) {
  int64_t seconds = 0;
  if (absl::SimpleAtoi(text, &seconds)) {
    return absl::FromUnixSeconds(seconds);
  }
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--at: \"", text.substr(0, 64), "\" is neither RFC 3339 nor unix seconds (", err, ")"));
}

absl::StatusOr<std::vector<uint8_t>> ReadQuoteFile(absl::string_view path) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, core::ReadFileBytes(path, kMaxQuoteFileBytes));
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file"));
  }
  std::string hex;
  for (uint8_t b : bytes) {
    if (absl::ascii_isspace(b)) {
      continue;
    }
    hex.push_back(static_cast<char>(b));
  }
  absl::string_view digits = hex;
  absl::ConsumePrefix(&digits, "0x");
  const bool all_hex = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
    return absl::ascii_isxdigit(static_cast<unsigned char>(c));
  });
  // A binary quote starts with its version (3, 4 or 5) as a little-endian u16, never with two
  // hex digits, so text made only of hex digits is hex.
  if (all_hex) {
    return core::HexDecode(digits);
  }
  return bytes;
}

int RunVerifyQuote(const VerifyQuoteOptions& options, std::ostream& out, std::ostream& err) {
  if (!options.extras.empty()) {
    return Usage(err, absl::StrCat("unexpected argument ", options.extras.front(),
                                   " (see pmlctl verify quote --help)"));
  }
  if (options.quote_path.empty()) {
    return Usage(err, "FILE (the quote) is required");
  }
  if (options.collateral_path.empty()) {
    return Usage(err, "--collateral is required: pmlctl verifies offline");
  }
  absl::Time at = absl::Now();
  if (!options.at.empty()) {
    auto t = ParseVerifyTime(options.at);
    if (!t.ok()) {
      return Usage(err, t.status().message());
    }
    at = *t;
  }
  auto bytes = ReadQuoteFile(options.quote_path);
  if (!bytes.ok()) {
    return Usage(err, bytes.status().message());
  }
  core::RealClock clock;
  auto collateral = LoadCollateral(options.collateral_path, clock);
  if (!collateral.ok()) {
    return Usage(err, absl::StrCat("--collateral ", options.collateral_path, ": ",
                                   collateral.status().message()));
  }
  auto anchors = Anchors(options);
  if (!anchors.ok()) {
    return Usage(err, absl::StrCat("trust anchors: ", anchors.status().message()));
  }

  auto quote = tdx::ParseQuote(*bytes);
  if (!quote.ok()) {
    if (options.json) {
      out << Json{{"verified", false},
                  {"error_class", tdx::ErrorClass(quote.status())},
                  {"error_message", std::string{quote.status().message()}}}
                 .dump(1)
          << "\n";
    } else {
      out << "REJECTED  error_class=" << tdx::ErrorClass(quote.status()) << "\n"
          << "reason:        " << quote.status().message() << "\n";
    }
    return kVerifyExitRejected;
  }
  auto run = [&](const tdx::Verifier::Options& vo) {
    tdx::Verifier verifier(*anchors, vo);
    return collateral->collateral.has_value() ? verifier.Verify(*quote, *collateral->collateral, at)
                                              : verifier.Verify(*bytes, *collateral->source, at);
  };
  absl::StatusOr<tdx::VerifiedQuote> v = run({});
  absl::Status failure = v.status();
  if (!v.ok() && tdx::ErrorClass(failure).empty()) {
    // Not a verdict: the collateral given holds nothing for this quote.
    return Usage(err,
                 absl::StrCat("--collateral ", options.collateral_path, ": ", failure.message()));
  }
  std::optional<tdx::VerifiedQuote> evaluation;
  if (v.ok()) {
    evaluation = std::move(v).value();
  } else if (tdx::IsCollateralTimeError(failure)) {
    // Show the TCB evaluation anyway (QvE semantics); the verdict stays "rejected".
    tdx::Verifier::Options lenient;
    lenient.verify.allow_expired_collateral = true;
    auto e = run(lenient);
    if (e.ok()) {
      evaluation = std::move(e).value();
    } else if (!tdx::IsCollateralTimeError(e.status()) && !tdx::ErrorClass(e.status()).empty()) {
      // lib/tdx checks time first and the time class stays the verdict, but a quote broken
      // beyond that must not hide behind the expiry: say so.
      failure = absl::Status(failure.code(),
                             absl::StrCat(failure.message(), "; also ", e.status().message()));
    }
  }
  const Json j = ResultJson(*quote, at, failure, evaluation);
  if (options.json) {
    out << j.dump(1) << "\n";
  } else {
    PrintText(j, out);
  }
  return failure.ok() ? kVerifyExitVerified : kVerifyExitRejected;
}

void AddVerifyCommands(CLI::App& app) {
  auto options = std::make_shared<VerifyQuoteOptions>();
  auto* verify = app.add_subcommand("verify", "verify evidence offline (no service needed)");
  verify->require_subcommand(1);
  auto* quote = verify->add_subcommand(
      "quote",
      "verify an Intel TDX (v4/v5) or SGX (v3) quote with DCAP, offline. Exit 0 when verified\n"
      "(any TCB status), 1 when rejected (prints the Intel error class), 2 on usage/IO errors");
  quote->allow_extras();
  quote->add_option("FILE", options->quote_path, "the quote: binary, or hex text");
  quote->add_option("--collateral", options->collateral_path,
                    "collateral: a collateral.json file (object or array), a PCS-split directory "
                    "(tcb_info.json, qe_identity.json, *.pem, *.der) or a pml-verifier cache "
                    "directory (required)");
  quote->add_option("--at", options->at,
                    "verification time, RFC 3339 (2025-07-01T00:00:00Z) or unix seconds "
                    "(default: now)");
  quote->add_flag("--json", options->json, "print the result as one JSON object");
  quote->add_flag("--trust-simulated-tee", options->trust_simulated_tee,
                  "UNSAFE: also trust the simulated TDX root of lib/tee (results say simulated)");
  quote->add_option("--trust-root", options->trust_root,
                    "PEM public key or root certificate to pin instead of the built-in Intel SGX "
                    "Root CA key");
  AddVerifyGpuCommand(*verify);
  AddVerifyTokenCommand(*verify);
  quote->callback([quote, options] {
    options->extras = quote->remaining();
    const int code = RunVerifyQuote(*options, std::cout, std::cerr);
    std::cout.flush();
    // CLI11's way for a subcommand callback to set the exit code: CLI11_PARSE catches it and
    // returns get_exit_code() without printing anything.
    throw CLI::RuntimeError(code);
  });
}

}  // namespace pml::pmlctl
