#include "services/guest-agent/agent_core.h"

#include <arpa/inet.h>

#include <algorithm>
#include <utility>

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/ratls/report_data.h"
#include "lib/tdx/quote.h"

namespace pml::guest {
namespace {

using Json = nlohmann::json;

// A JSON array, compact ("[]" when `json` is not an array).
std::string CompactArray(const std::string& json) {
  Json j = Json::parse(json, nullptr, false);
  return j.is_array() ? j.dump() : std::string("[]");
}

// The boot log (RTMR0-2) followed by the runtime log (RTMR3), as one dstack JSON array. Both are
// compact arrays, so this splices text instead of parsing per quote.
std::string FullLog(const std::string& boot_json, const std::string& runtime_json) {
  if (boot_json.size() <= 2)
    return runtime_json;
  if (runtime_json.size() <= 2)
    return boot_json;
  std::string out;
  out.reserve(boot_json.size() + runtime_json.size());
  out.append(boot_json, 0, boot_json.size() - 1);
  out.push_back(',');
  out.append(runtime_json, 1, std::string::npos);
  return out;
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool PrintableName(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

bool IsBootEventName(absl::string_view name) {
  for (const char* n : kBootEventNames) {
    if (name == n)
      return true;
  }
  for (const char* n : {"os-image-hash", "mr-kms", "init-script-hash", "gpu-policy-hash",
                        "storage-fs", "rootfs-hash"}) {
    if (name == n)
      return true;
  }
  return false;
}

absl::Status AgentCore::EmitEvent(absl::string_view name, absl::Span<const uint8_t> payload,
                                  EmitReceipt* receipt) const {
  if (IsBootEventName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("event: \"", name, "\" is a boot event; only the boot sequence emits it"));
  }
  return log_.Emit(name, payload, receipt);
}

AgentCore::AgentCore(RuntimeEventLog& log, AppKeys& keys, const AppCa* ca, GpuSource* gpus,
                     AgentIdentity identity)
    : log_(log), keys_(keys), ca_(ca), gpus_(gpus), identity_(std::move(identity)) {
  identity_.boot_log_json = CompactArray(identity_.boot_log_json);
  // Answers embed vm_config as a JSON string: make it valid UTF-8 once (invalid bytes -> U+FFFD).
  identity_.vm_config = Json::parse(
      Json(identity_.vm_config).dump(-1, ' ', false, Json::error_handler_t::replace))
                            .get<std::string>();
}

absl::StatusOr<QuoteResult> AgentCore::GetQuote(absl::Span<const uint8_t> report_data) const {
  if (report_data.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("report_data: ", report_data.size(), " bytes, at most 64"));
  }
  std::vector<uint8_t> rd(report_data.begin(), report_data.end());
  rd.resize(64, 0);
  PML_ASSIGN_OR_RETURN(QuoteAndLog q, log_.GetQuoteAndLog(rd));
  QuoteResult r;
  r.quote = std::move(q.quote);
  r.event_log = FullLog(identity_.boot_log_json, q.runtime_log_json);
  r.report_data = std::move(rd);
  r.vm_config = identity_.vm_config;
  r.simulated = simulated();
  return r;
}

absl::StatusOr<TlsKeyResult> AgentCore::GetTlsKey(const TlsKeyRequest& req) const {
  if (ca_ == nullptr) {
    return absl::FailedPreconditionError(
        "no app CA: the key provider supplied none, so TLS certificates cannot be issued");
  }
  if (req.subject.size() > kMaxTlsSubjectBytes || !PrintableName(req.subject)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subject: at most ", kMaxTlsSubjectBytes, " printable ASCII characters"));
  }
  if (req.alt_names.size() > kMaxTlsAltNames)
    return absl::InvalidArgumentError(absl::StrCat("alt_names: at most ", kMaxTlsAltNames));
  crypto::CertSpec spec;
  spec.common_name = req.subject.empty() ? "dstack app" : req.subject;
  for (size_t i = 0; i < req.alt_names.size(); ++i) {
    const std::string& n = req.alt_names[i];
    if (n.empty() || n.size() > 253 || !PrintableName(n) || n.find(' ') != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat("alt_names[", i, "]: not a DNS name or IP"));
    (IsIp(n) ? spec.ip_sans : spec.dns_sans).push_back(n);
  }
  spec.server_auth = req.usage_server_auth;
  spec.client_auth = req.usage_client_auth;
  const absl::Time now = absl::Now();
  spec.not_before = req.not_before.value_or(now - absl::Hours(1));
  spec.not_after = req.not_after.value_or(spec.not_before + absl::Hours(24 * 365));
  if (spec.not_after <= spec.not_before)
    return absl::InvalidArgumentError("not_after: must be after not_before");
  // A leaf never outlives its CA.
  PML_ASSIGN_OR_RETURN(crypto::Validity ca_validity, crypto::CertificateValidity(*ca_->cert));
  spec.not_after = std::min(spec.not_after, ca_validity.not_after);
  if (spec.not_after <= spec.not_before)
    return absl::InvalidArgumentError("not_before: after the app CA's expiry");

  crypto::EvpPkeyPtr key;
  if (req.derive_path.has_value()) {
    PML_ASSIGN_OR_RETURN(key, keys_.DeriveTlsKey(*req.derive_path));
  } else {
    PML_ASSIGN_OR_RETURN(key, crypto::GenerateEcKey(crypto::Curve::kP256));
  }
  ratls::RaTlsClaims claims;
  claims.usage = std::string(ratls::kUsageAppCustom);
  if (req.with_app_info || req.usage_ra_tls)
    claims.app_id = identity_.app_id;
  if (req.usage_ra_tls) {
    PML_ASSIGN_OR_RETURN(ratls::ReportData rd, ratls::KeyReportData(*key));
    PML_ASSIGN_OR_RETURN(QuoteResult q, GetQuote(rd));
    claims.quote = std::move(q.quote);
    claims.event_log = std::move(q.event_log);
  }
  spec.extensions = ratls::RaTlsExtensions(claims);
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr leaf,
                       crypto::IssueCertificate(spec, *key, *ca_->key, ca_->cert.get()));
  TlsKeyResult out;
  PML_ASSIGN_OR_RETURN(out.key_pem, crypto::PrivateKeyToPem(*key));
  PML_ASSIGN_OR_RETURN(std::string leaf_pem, crypto::CertificateToPem(*leaf));
  out.certificate_chain.push_back(std::move(leaf_pem));
  for (const std::string& c : ca_->chain_pem)
    out.certificate_chain.push_back(c);
  return out;
}

absl::StatusOr<InfoResult> AgentCore::Info() const {
  // The registers as a fresh quote states them (the TEE's own view).
  PML_ASSIGN_OR_RETURN(QuoteResult q, GetQuote({}));
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
  const auto mr = crypto::Sha256(agg);
  InfoResult r;
  r.mr_aggregated.assign(mr.begin(), mr.end());
  Json tcb = {{"mrtd", core::HexEncode(td.mr_td)},
              {"rtmr0", core::HexEncode(td.rtmr[0])},
              {"rtmr1", core::HexEncode(td.rtmr[1])},
              {"rtmr2", core::HexEncode(td.rtmr[2])},
              {"rtmr3", core::HexEncode(td.rtmr[3])},
              {"mr_aggregated", core::HexEncode(r.mr_aggregated)},
              {"os_image_hash", core::HexEncode(identity_.os_image_hash)},
              {"image_variant", identity_.image_variant},
              {"compose_hash", core::HexEncode(identity_.compose_hash)},
              {"device_id", core::HexEncode(identity_.device_id)},
              {"event_log", Json::parse(q.event_log, nullptr, false)},
              {"app_compose", identity_.app_compose}};
  r.tcb_info_json = tcb.dump();
  if (ca_ != nullptr && !ca_->chain_pem.empty())
    r.app_cert_pem = ca_->chain_pem.front();
  return r;
}

absl::StatusOr<common::v1::EvidenceBundle> AgentCore::Attest(absl::Span<const uint8_t> report_data,
                                                             bool skip_gpu) const {
  return BuildEvidenceBundle(log_, skip_gpu ? nullptr : gpus_, identity_, report_data);
}

absl::StatusOr<common::v1::EvidenceBundle> BuildEvidenceBundle(
    RuntimeEventLog& log, GpuSource* gpus, const AgentIdentity& identity_,
    absl::Span<const uint8_t> report_data) {
  if (report_data.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("report_data: ", report_data.size(), " bytes, at most 64"));
  }
  std::vector<uint8_t> rd_bytes(report_data.begin(), report_data.end());
  rd_bytes.resize(64, 0);
  PML_ASSIGN_OR_RETURN(QuoteAndLog ql, log.GetQuoteAndLog(rd_bytes));
  QuoteResult q;
  q.quote = std::move(ql.quote);
  q.event_log = FullLog(CompactArray(identity_.boot_log_json), ql.runtime_log_json);
  q.report_data = std::move(rd_bytes);
  q.vm_config = identity_.vm_config;
  q.simulated = identity_.tee_kind == "simulated";
  common::v1::EvidenceBundle b;
  b.set_tdx_quote(core::ToString(q.quote));
  b.set_event_log(q.event_log);
  b.set_vm_config(q.vm_config);
  b.set_report_data(core::ToString(q.report_data));
  b.set_simulated(q.simulated);
  if (identity_.tee_kind == "simulated") {
    b.set_tee_provider(common::v1::TEE_PROVIDER_SIMULATOR);
  } else if (identity_.tee_kind == "configfs-tsm") {
    b.set_tee_provider(common::v1::TEE_PROVIDER_CONFIGFS_TSM);
  } else if (identity_.tee_kind == "tdx-guest-device") {
    b.set_tee_provider(common::v1::TEE_PROVIDER_TDX_GUEST_DEVICE);
  }
  *b.mutable_collected_at() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(absl::Now()));
  common::v1::AppInfo* app = b.mutable_app_info();
  app->set_app_id(core::ToString(identity_.app_id));
  app->set_compose_hash(core::ToString(identity_.compose_hash));
  app->set_instance_id(core::ToString(identity_.instance_id));
  app->set_os_image_hash(core::ToString(identity_.os_image_hash));
  app->set_device_id(core::ToString(identity_.device_id));
  app->set_app_name(identity_.app_name);
  if (identity_.image_variant == "production") {
    app->set_image_variant(common::v1::IMAGE_VARIANT_PRODUCTION);
  } else if (identity_.image_variant == "development") {
    app->set_image_variant(common::v1::IMAGE_VARIANT_DEVELOPMENT);
  }
  app->set_key_provider_info(identity_.key_provider_info);
  if (gpus != nullptr) {
    ratls::ReportData rd{};
    std::copy(q.report_data.begin(), q.report_data.end(), rd.begin());
    const ratls::GpuNonceBytes nonce = ratls::GpuNonce(rd);
    PML_ASSIGN_OR_RETURN(std::vector<GpuDeviceEvidence> ev, gpus->Collect(nonce));
    for (const GpuDeviceEvidence& e : ev) {
      common::v1::GpuEvidence* g = b.add_gpus();
      g->set_index(e.info.index);
      g->set_uuid(e.info.uuid);
      g->set_device_kind(common::v1::GPU_DEVICE_KIND_GPU);
      g->set_arch(e.info.arch == "BLACKWELL" ? common::v1::GPU_ARCH_BLACKWELL
                                             : common::v1::GPU_ARCH_HOPPER);
      g->set_spdm_report(core::ToString(e.report));
      g->set_certificate_chain(e.chain_pem);
      g->set_nonce(std::string(nonce.begin(), nonce.end()));
      g->set_driver_version(e.info.driver_version);
      g->set_vbios_version(e.info.vbios_version);
      g->set_cc_mode(!e.info.cc_on        ? common::v1::GPU_CC_MODE_OFF
                     : e.info.devtools    ? common::v1::GPU_CC_MODE_DEVTOOLS
                     : e.info.ppcie       ? common::v1::GPU_CC_MODE_PROTECTED_PCIE
                                          : common::v1::GPU_CC_MODE_ON);
      g->set_simulated(e.info.simulated);
    }
  }
  return b;
}

absl::StatusOr<LocalDevKeys> MakeLocalDevKeys(const crypto::SecretBytes& seed,
                                              absl::Span<const uint8_t> app_id) {
  if (seed.size() != 32)
    return absl::InvalidArgumentError("local-dev seed: want 32 bytes");
  const auto salt = core::AsBytes("pml-local-dev-keys:v1");
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> root_ikm,
                       crypto::HkdfSha256(seed.span(), salt, core::AsBytes("root"), 32));
  PML_ASSIGN_OR_RETURN(auto root, AppKeys::Create(crypto::SecretBytes(std::move(root_ikm)), {}));
  std::string app_info = "app-key:";
  app_info.append(app_id.begin(), app_id.end());
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> app_key,
                       crypto::HkdfSha256(seed.span(), salt, core::AsBytes(app_info), 32));

  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr root_key, root->DeriveTlsKey("local-dev-root-ca"));
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ca_key,
                       root->DeriveTlsKey(absl::StrCat("app-ca/", core::HexEncode(app_id))));
  const absl::Time now = absl::Now();
  crypto::CertSpec rs;
  rs.common_name = "PML local-dev KMS root (DEVELOPMENT)";
  rs.organization = "PML development";
  rs.is_ca = true;
  rs.path_len = 1;
  rs.not_before = now - absl::Hours(1);
  rs.not_after = now + absl::Hours(24 * 3650);
  rs.extensions = ratls::RaTlsExtensions({.usage = "kms:ca"});
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr root_cert,
                       crypto::IssueCertificate(rs, *root_key, *root_key, nullptr));
  crypto::CertSpec as;
  as.common_name = absl::StrCat("App CA ", core::HexEncode(app_id));
  as.organization = "PML development";
  as.is_ca = true;
  as.path_len = 0;
  as.not_before = rs.not_before;
  as.not_after = rs.not_after;
  ratls::RaTlsClaims ca_claims;
  ca_claims.app_id.assign(app_id.begin(), app_id.end());
  ca_claims.usage = std::string(ratls::kUsageAppCa);
  as.extensions = ratls::RaTlsExtensions(ca_claims);
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr ca_cert,
                       crypto::IssueCertificate(as, *ca_key, *root_key, root_cert.get()));

  LocalDevKeys out;
  out.app_key = crypto::SecretBytes(std::move(app_key));
  PML_ASSIGN_OR_RETURN(std::string ca_pem, crypto::CertificateToPem(*ca_cert));
  PML_ASSIGN_OR_RETURN(std::string root_pem, crypto::CertificateToPem(*root_cert));
  out.ca.chain_pem = {ca_pem, root_pem};
  out.ca.key = std::move(ca_key);
  out.ca.cert = std::move(ca_cert);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(*root_key));
  out.key_provider_info =
      Json{{"name", "local-dev"}, {"id", core::HexEncode(crypto::Sha256(core::ToString(spki)))}}
          .dump();
  return out;
}

}  // namespace pml::guest
