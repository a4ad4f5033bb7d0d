#include "services/attestation/verifier_convert.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/report.h"

namespace pml::attestation {
namespace {

// google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

template <typename C>
std::string Bytes(const C& c) {
  return std::string(c.begin(), c.end());
}

// Little-endian, as the quote stores it (tdx-quote-verification.md §2.2).
std::string Le64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  return out;
}

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

void HeaderToProto(const tdx::QuoteHeader& h, v1::QuoteHeader* out) {
  out->set_version(h.version);
  out->set_attestation_key_type(h.attestation_key_type);
  out->set_tee_type(h.tee_type);
  out->set_qe_svn(h.qe_svn);
  out->set_pce_svn(h.pce_svn);
  out->set_qe_vendor_id(Bytes(h.qe_vendor_id));
  out->set_user_data(Bytes(h.user_data));
}

void TdReportToProto(const tdx::TdReport& td, tdx::BodyType type, v1::TdReport* out) {
  out->set_tee_tcb_svn(Bytes(td.tee_tcb_svn));
  out->set_mrseam(Bytes(td.mr_seam));
  out->set_mrsignerseam(Bytes(td.mr_signer_seam));
  out->set_seam_attributes(Le64(td.seam_attributes));
  out->set_td_attributes(Le64(td.td_attributes));
  out->set_xfam(Le64(td.xfam));
  out->set_mrtd(Bytes(td.mr_td));
  out->set_mrconfigid(Bytes(td.mr_config_id));
  out->set_mrowner(Bytes(td.mr_owner));
  out->set_mrownerconfig(Bytes(td.mr_owner_config));
  out->set_rtmr0(Bytes(td.rtmr[0]));
  out->set_rtmr1(Bytes(td.rtmr[1]));
  out->set_rtmr2(Bytes(td.rtmr[2]));
  out->set_rtmr3(Bytes(td.rtmr[3]));
  out->set_report_data(Bytes(td.report_data));
  if (td.tee_tcb_svn_2.has_value()) {
    out->set_tee_tcb_svn_2(Bytes(*td.tee_tcb_svn_2));
  }
  if (td.mr_service_td.has_value()) {
    out->set_mrservicetd(Bytes(*td.mr_service_td));
  }
  out->set_version(type == tdx::BodyType::kTdReport15 ? "1.5" : "1.0");
  out->set_debug((td.td_attributes & tdx::kTdAttributeDebug) != 0);
}

void SgxReportToProto(const tdx::EnclaveReport& r, v1::SgxEnclaveReport* out) {
  out->set_cpu_svn(Bytes(r.cpu_svn));
  out->set_misc_select(r.misc_select);
  out->set_attributes(Bytes(r.attributes));
  out->set_mrenclave(Bytes(r.mr_enclave));
  out->set_mrsigner(Bytes(r.mr_signer));
  out->set_isv_prod_id(r.isv_prod_id);
  out->set_isv_svn(r.isv_svn);
  out->set_report_data(Bytes(r.report_data));
}

v1::CollateralSource OriginToProto(CollateralOrigin o) {
  switch (o) {
    case CollateralOrigin::kRequest:
      return v1::COLLATERAL_SOURCE_REQUEST;
    case CollateralOrigin::kCache:
      return v1::COLLATERAL_SOURCE_CACHE;
    case CollateralOrigin::kNetwork:
      return v1::COLLATERAL_SOURCE_NETWORK;
  }
  return v1::COLLATERAL_SOURCE_UNSPECIFIED;
}

void ReplayToProto(const EventLogReplayResult& r, v1::EventLogReplay* out) {
  if (!r.error.empty()) {
    out->set_error(r.error);
    return;
  }
  out->set_matches(r.matches);
  for (const tdx::Bytes48& m : r.replayed) {
    out->add_replayed_rtmrs(Bytes(m));
  }
  for (uint32_t i : r.mismatched) {
    out->add_mismatched_rtmrs(i);
  }
  out->set_event_count(static_cast<uint32_t>(r.event_count));
  auto* app = out->mutable_app_info();
  app->set_app_id(Bytes(r.app_info.app_id));
  app->set_compose_hash(Bytes(r.app_info.compose_hash));
  app->set_instance_id(Bytes(r.app_info.instance_id));
  app->set_os_image_hash(Bytes(r.app_info.os_image_hash));
  app->set_key_provider_info(r.app_info.key_provider_info);
}

}  // namespace

absl::StatusOr<absl::Time> TimeFromProto(const google::protobuf::Timestamp& ts,
                                         absl::string_view field) {
  if (ts.seconds() < kMinTimestampSeconds || ts.seconds() > kMaxTimestampSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": seconds ", ts.seconds(), " outside 0001-01-01..9999-12-31"));
  }
  if (ts.nanos() < 0 || ts.nanos() >= 1000000000) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": nanos ", ts.nanos(), " outside [0, 1e9)"));
  }
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) {
    return;
  }
  const int64_t s = absl::ToUnixSeconds(t);
  out->set_seconds(s);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(s))));
}

absl::StatusOr<tdx::Collateral> CollateralFromProto(const v1::QuoteCollateral& c) {
  const std::pair<absl::string_view, const std::string*> required[] = {
      {"pck_crl_issuer_chain", &c.pck_crl_issuer_chain()},
      {"root_ca_crl", &c.root_ca_crl()},
      {"pck_crl", &c.pck_crl()},
      {"tcb_info_issuer_chain", &c.tcb_info_issuer_chain()},
      {"tcb_info", &c.tcb_info()},
      {"tcb_info_signature", &c.tcb_info_signature()},
      {"qe_identity_issuer_chain", &c.qe_identity_issuer_chain()},
      {"qe_identity", &c.qe_identity()},
      {"qe_identity_signature", &c.qe_identity_signature()},
  };
  for (const auto& [name, value] : required) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("collateral_fields.", name, ": missing"));
    }
  }
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  tdx::Collateral out;
  out.tcb_info_body = c.tcb_info();
  out.tcb_info_signature = bytes(c.tcb_info_signature());
  out.tcb_info_issuer_chain = c.tcb_info_issuer_chain();
  out.qe_identity_body = c.qe_identity();
  out.qe_identity_signature = bytes(c.qe_identity_signature());
  out.qe_identity_issuer_chain = c.qe_identity_issuer_chain();
  out.pck_crl = bytes(c.pck_crl());
  out.pck_crl_issuer_chain = c.pck_crl_issuer_chain();
  out.root_ca_crl = bytes(c.root_ca_crl());
  out.pck_certificate_chain = c.pck_certificate_chain();
  return out;
}

absl::StatusOr<TdxVerifyInput> TdxVerifyInputFromProto(const v1::VerifyTdxQuoteRequest& req) {
  TdxVerifyInput in;
  if (req.quote().empty()) {
    return absl::InvalidArgumentError("quote: empty");
  }
  in.quote.assign(req.quote().begin(), req.quote().end());
  switch (req.collateral_case()) {
    case v1::VerifyTdxQuoteRequest::kCollateralJson: {
      auto c = tdx::ParseCollateralJson(req.collateral_json());
      if (!c.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("collateral_json: ", c.status().message()));
      }
      in.collateral = std::move(c).value();
      break;
    }
    case v1::VerifyTdxQuoteRequest::kCollateralFields: {
      auto c = CollateralFromProto(req.collateral_fields());
      if (!c.ok()) {
        return c.status();
      }
      in.collateral = std::move(c).value();
      break;
    }
    case v1::VerifyTdxQuoteRequest::COLLATERAL_NOT_SET:
      break;
  }
  if (req.has_verification_time()) {
    auto t = TimeFromProto(req.verification_time(), "verification_time");
    if (!t.ok()) {
      return t.status();
    }
    in.at = *t;
  }
  in.event_log = req.event_log();
  in.offline = req.offline();
  return in;
}

v1::TcbStatus TcbStatusToProto(tdx::TcbStatus s) {
  switch (s) {
    case tdx::TcbStatus::kUpToDate:
      return v1::TCB_STATUS_UP_TO_DATE;
    case tdx::TcbStatus::kSWHardeningNeeded:
      return v1::TCB_STATUS_SW_HARDENING_NEEDED;
    case tdx::TcbStatus::kConfigurationNeeded:
      return v1::TCB_STATUS_CONFIGURATION_NEEDED;
    case tdx::TcbStatus::kConfigurationAndSWHardeningNeeded:
      return v1::TCB_STATUS_CONFIGURATION_AND_SW_HARDENING_NEEDED;
    case tdx::TcbStatus::kOutOfDate:
      return v1::TCB_STATUS_OUT_OF_DATE;
    case tdx::TcbStatus::kOutOfDateConfigurationNeeded:
      return v1::TCB_STATUS_OUT_OF_DATE_CONFIGURATION_NEEDED;
    case tdx::TcbStatus::kRevoked:
      return v1::TCB_STATUS_REVOKED;
    case tdx::TcbStatus::kTDRelaunchAdvised:
      return v1::TCB_STATUS_TD_RELAUNCH_ADVISED;
    case tdx::TcbStatus::kTDRelaunchAdvisedConfigurationNeeded:
      return v1::TCB_STATUS_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED;
  }
  return v1::TCB_STATUS_UNSPECIFIED;
}

void TdxVerificationToProto(const TdxVerification& v, v1::TdxQuoteVerification* out) {
  out->set_verified(v.verified);
  out->set_error_class(v.error_class);
  out->set_error_message(v.error_message);
  HeaderToProto(v.quote.header, out->mutable_header());
  if (v.quote.td_report.has_value()) {
    TdReportToProto(*v.quote.td_report, v.quote.body_type, out->mutable_td_report());
  } else if (v.quote.enclave_report.has_value()) {
    SgxReportToProto(*v.quote.enclave_report, out->mutable_sgx_report());
  }
  TimeToProto(v.verification_time, out->mutable_verification_time());
  out->set_collateral_source(OriginToProto(v.collateral_origin));
  // The time verdict stands even when the lenient re-evaluation could not run.
  out->set_collateral_expired(v.collateral_time_error);
  if (v.evaluation.has_value()) {
    const tdx::VerifiedQuote& e = *v.evaluation;
    out->set_tcb_status(TcbStatusToProto(e.tcb_status()));
    for (const tdx::Advisory& a : e.all_advisories()) {
      auto* p = out->add_advisories();
      p->set_id(a.id);
      p->set_source(std::string{AdvisorySourceName(a.source)});
    }
    std::vector<std::string> ids = e.advisory_ids();
    for (const tdx::Advisory& a : e.all_advisories()) {
      if (std::find(ids.begin(), ids.end(), a.id) == ids.end()) {
        ids.push_back(a.id);
      }
    }
    for (const std::string& id : ids) {
      out->add_advisory_ids(id);
    }
    TimeToProto(e.tcb_date(), out->mutable_tcb_date());
    out->set_tcb_evaluation_data_number(static_cast<uint32_t>(e.tcb_evaluation_data_number()));
    out->set_platform_tcb_status(TcbStatusToProto(e.tcb_level_status()));
    if (e.tdx_module_status().has_value()) {
      out->set_tdx_module_tcb_status(TcbStatusToProto(*e.tdx_module_status()));
    }
    out->set_qe_tcb_status(TcbStatusToProto(e.qe_tcb_status()));
    out->set_collateral_expired(out->collateral_expired() || e.collateral_expired());
    TimeToProto(e.collateral_window().not_after, out->mutable_collateral_expires_at());
    out->set_collateral_expiry_item(e.collateral_window().not_after_item);
    out->set_fmspc(Bytes(e.fmspc()));
    out->set_pce_id(Bytes(e.pck().pce_id));
    out->set_device_id(Bytes(crypto::Sha256(absl::Span<const uint8_t>(e.pck().ppid))));
    out->set_simulated(e.simulated());
    if (e.simulated()) {
      out->set_collateral_source(v1::COLLATERAL_SOURCE_SIMULATED);
    }
  }
  if (v.event_log.has_value()) {
    ReplayToProto(*v.event_log, out->mutable_event_log_replay());
  }
  if (out->has_event_log_replay() && v.evaluation.has_value()) {
    out->mutable_event_log_replay()->mutable_app_info()->set_device_id(out->device_id());
  }
}

void CachedCollateralToProto(const CachedCollateral& e, v1::CollateralCacheEntry* out) {
  out->set_kind(v1::COLLATERAL_KIND_INTEL_TCB);
  out->set_key(absl::AsciiStrToUpper(core::HexEncode(e.fmspc)));  // as Intel writes it
  TimeToProto(e.fetched_at, out->mutable_fetched_at());
  TimeToProto(e.expires_at, out->mutable_expires_at());
  out->set_expiry_item(e.expiry_item);
  out->set_expired(e.expired);
  out->set_origin(e.origin);
  out->set_tcb_evaluation_data_number(static_cast<uint32_t>(e.tcb_evaluation_data_number));
  out->set_content_sha256(Bytes(e.content_sha256));
}

void CacheStatusToProto(const CacheStatus& status, const v1::GetCollateralCacheStatusRequest& req,
                        v1::GetCollateralCacheStatusResponse* out) {
  const bool intel =
      req.kinds().empty() || std::find(req.kinds().begin(), req.kinds().end(),
                                       v1::COLLATERAL_KIND_INTEL_TCB) != req.kinds().end();
  if (intel) {
    for (const CachedCollateral& e : status.entries) {
      CachedCollateralToProto(e, out->add_entries());
    }
  }
  out->set_pcs_url(status.upstream_name);
  out->set_hits(status.hits);
  out->set_misses(status.misses);
  if (status.last_refresh_time.has_value()) {
    TimeToProto(*status.last_refresh_time, out->mutable_last_refresh_time());
  }
  out->set_last_refresh_error(status.last_refresh_error);
}

absl::StatusOr<RefreshInput> RefreshInputFromProto(const v1::RefreshCollateralRequest& req,
                                                   bool* intel) {
  *intel = req.kinds().empty() || std::find(req.kinds().begin(), req.kinds().end(),
                                            v1::COLLATERAL_KIND_INTEL_TCB) != req.kinds().end();
  RefreshInput in;
  for (int i = 0; i < req.fmspcs_size(); ++i) {
    const std::string& f = req.fmspcs(i);
    if (f.size() != 6) {
      return absl::InvalidArgumentError(
          absl::StrCat("fmspcs[", i, "]: ", f.size(), " bytes, want 6"));
    }
    tdx::Fmspc fmspc{};
    std::copy(f.begin(), f.end(), fmspc.begin());
    in.fmspcs.push_back(fmspc);
  }
  if (!req.import_collateral_json().empty()) {
    in.import_json = req.import_collateral_json();
  }
  in.force = req.force();
  return in;
}

void RefreshResultToProto(const RefreshResult& r, v1::RefreshCollateralResponse* out) {
  for (const CachedCollateral& e : r.refreshed) {
    CachedCollateralToProto(e, out->add_refreshed());
  }
  for (const RefreshFailure& f : r.failures) {
    auto* p = out->add_failures();
    p->set_kind(v1::COLLATERAL_KIND_INTEL_TCB);
    p->set_key(f.key);
    p->set_reason(f.reason);
  }
}

// ---- GPU evidence

namespace {

std::optional<gpu::Arch> ArchFromProto(common::v1::GpuArch a) {
  switch (a) {
    case common::v1::GPU_ARCH_HOPPER:
      return gpu::Arch::kHopper;
    case common::v1::GPU_ARCH_BLACKWELL:
      return gpu::Arch::kBlackwell;
    case common::v1::GPU_ARCH_LS10:
      return gpu::Arch::kLs10;
    default:
      return std::nullopt;
  }
}

common::v1::GpuArch ArchToProto(gpu::Arch a) {
  switch (a) {
    case gpu::Arch::kHopper:
      return common::v1::GPU_ARCH_HOPPER;
    case gpu::Arch::kBlackwell:
      return common::v1::GPU_ARCH_BLACKWELL;
    case gpu::Arch::kLs10:
      return common::v1::GPU_ARCH_LS10;
  }
  return common::v1::GPU_ARCH_UNSPECIFIED;
}

void ChainClaimsToProto(const gpu::CertChainClaims& c, v1::CertChainClaims* out) {
  out->set_cert_expiration_date(gpu::FormatClaimTime(c.expiration_date));
  out->set_cert_status(c.cert_status);
  out->set_cert_ocsp_status(c.ocsp_status);
  out->set_cert_revocation_reason(c.revocation_reason);
  out->set_cert_ocsp_nonce_matches(c.ocsp_nonce_matches);
  out->set_cert_ocsp_response_valid(c.ocsp_response_valid);
}

void VerifiedGpuToProto(const gpu::VerifiedGpu& g, v1::GpuClaims* out) {
  out->set_arch(ArchToProto(g.arch()));
  out->set_measres(g.measres() ? "success" : "fail");
  if (g.measres()) {
    out->set_secboot(true);
    out->set_dbgstat("disabled");
  }
  out->set_eat_nonce(core::HexEncode(g.nonce()));
  out->set_hwmodel(g.hwmodel());
  out->set_ueid(g.ueid());
  out->set_oemid(g.oemid());
  for (const auto& m : g.measurements().mismatches) {
    v1::MismatchMeasurementRecord* r = out->add_mismatch_measurement_records();
    r->set_index(m.index);
    r->set_golden_size(static_cast<uint32_t>(m.golden_size));
    r->set_golden_value(core::ToString(m.golden_value));
    r->set_runtime_size(static_cast<uint32_t>(m.runtime_size));
    r->set_runtime_value(core::ToString(m.runtime_value));
    r->set_measurement_source(m.source == gpu::RimKind::kDriver ? "driver" : "vbios");
  }
  out->set_gpu_arch_check(true);
  out->set_gpu_driver_version(g.driver_version());
  out->set_gpu_vbios_version(g.vbios_version());
  for (const auto& pdi : g.switch_pdis())
    out->add_gpu_switch_pdis(pdi);
  ChainClaimsToProto(g.device_chain(), out->mutable_gpu_attestation_report_cert_chain());
  out->set_gpu_attestation_report_cert_chain_fwid_match(true);
  out->set_gpu_attestation_report_parsed(true);
  out->set_gpu_attestation_report_nonce_match(true);
  out->set_gpu_attestation_report_signature_verified(true);
  if (!g.is_switch()) {
    const gpu::RimClaims& d = g.driver_rim();
    out->set_gpu_driver_rim_fetched(d.fetched);
    ChainClaimsToProto(d.cert_chain, out->mutable_gpu_driver_rim_cert_chain());
    out->set_gpu_driver_rim_signature_verified(d.signature_verified);
    out->set_gpu_driver_rim_version_match(d.version_match);
    out->set_gpu_driver_rim_measurements_available(d.measurements_available);
  }
  const gpu::RimClaims& v = g.vbios_rim();
  out->set_gpu_vbios_rim_fetched(v.fetched);
  ChainClaimsToProto(v.cert_chain, out->mutable_gpu_vbios_rim_cert_chain());
  out->set_gpu_vbios_rim_signature_verified(v.signature_verified);
  out->set_gpu_vbios_rim_version_match(v.version_match);
  out->set_gpu_vbios_rim_measurements_available(v.measurements_available);
  out->set_gpu_vbios_index_no_conflict(g.measurements().index_no_conflict);
  out->set_passed(g.Passed());
  for (const auto& f : g.Failures())
    out->add_failed_checks(f);
  auto ppcie = gpu::ProtectedPcieStatus(g.report());
  out->set_ppcie_enabled(ppcie.ok() && ppcie->has_value() && **ppcie == 0xAA);
  out->set_simulated(g.simulated());
}

// The claims of the checks a refused device passed before the one that refused it.
void RefusedGpuToProto(const absl::Status& error, const GpuDeviceInput& in, v1::GpuClaims* out) {
  const std::string cls = gpu::ErrorClass(error);
  out->set_measres("fail");
  out->set_gpu_attestation_report_parsed(true);
  if (in.arch.has_value())
    out->set_arch(ArchToProto(*in.arch));
  // Checks run in this order; each class says how far verification got.
  static constexpr absl::string_view kOrder[] = {
      gpu::error_class::kCertChainUntrusted, gpu::error_class::kArchMismatch,
      gpu::error_class::kInvalidReportSignature, gpu::error_class::kNonceMismatch,
      gpu::error_class::kFwidMismatch};
  size_t stage = 0;
  while (stage < std::size(kOrder) && kOrder[stage] != cls)
    ++stage;
  const bool chain_ok = stage >= 1 && stage < std::size(kOrder);
  out->mutable_gpu_attestation_report_cert_chain()->set_cert_status(chain_ok ? "valid" : "invalid");
  out->mutable_gpu_attestation_report_cert_chain()->set_cert_ocsp_status("unknown");
  out->set_gpu_arch_check(stage >= 2 && stage < std::size(kOrder));
  out->set_gpu_attestation_report_signature_verified(stage >= 3 && stage < std::size(kOrder));
  out->set_gpu_attestation_report_nonce_match(stage >= 4 && stage < std::size(kOrder));
  out->set_gpu_attestation_report_cert_chain_fwid_match(false);
  out->set_passed(false);
  out->add_failed_checks(std::string(error.message()).substr(0, 512));
}

}  // namespace

absl::StatusOr<GpuVerifyInput> GpuVerifyInputFromProto(const v1::VerifyGpuEvidenceRequest& req) {
  GpuVerifyInput in;
  if (req.expected_nonce().size() != gpu::kNonceSize) {
    return absl::InvalidArgumentError(absl::StrCat("expected_nonce: ", req.expected_nonce().size(),
                                                   " bytes, want ", gpu::kNonceSize));
  }
  std::copy(req.expected_nonce().begin(), req.expected_nonce().end(), in.nonce.begin());
  for (int i = 0; i < req.evidence_size(); ++i) {
    const common::v1::GpuEvidence& e = req.evidence(i);
    GpuDeviceInput d;
    d.index = e.index();
    d.uuid = e.uuid().substr(0, 128);
    d.arch = ArchFromProto(e.arch());
    d.is_switch = e.device_kind() == common::v1::GPU_DEVICE_KIND_NVSWITCH;
    if (d.arch.has_value() && gpu::IsSwitch(*d.arch) != d.is_switch &&
        e.device_kind() != common::v1::GPU_DEVICE_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("evidence[", i, "].arch: ", common::v1::GpuArch_Name(e.arch()),
                       " with device_kind ", common::v1::GpuDeviceKind_Name(e.device_kind())));
    }
    if (e.device_kind() == common::v1::GPU_DEVICE_KIND_UNSPECIFIED && d.arch.has_value())
      d.is_switch = gpu::IsSwitch(*d.arch);
    d.report.assign(e.spdm_report().begin(), e.spdm_report().end());
    d.certificate_chain = e.certificate_chain();
    in.devices.push_back(std::move(d));
  }
  for (int i = 0; i < req.rims_size(); ++i)
    in.rims.push_back({req.rims(i).rim_id(), req.rims(i).content()});
  for (int i = 0; i < req.ocsp_responses_size(); ++i) {
    in.ocsp_responses.emplace_back(req.ocsp_responses(i).begin(), req.ocsp_responses(i).end());
  }
  if (req.has_verification_time()) {
    PML_ASSIGN_OR_RETURN(in.at, TimeFromProto(req.verification_time(), "verification_time"));
  }
  in.offline = req.offline();
  return in;
}

void GpuVerificationToProto(const GpuVerification& v, v1::VerifyGpuEvidenceResponse* out) {
  out->set_overall_att_result(v.overall);
  for (const GpuDeviceOutcome& d : v.devices) {
    v1::GpuClaims* c = out->add_devices();
    c->set_index(d.input->index);
    c->set_uuid(d.input->uuid);
    c->set_device_kind(d.input->is_switch ? common::v1::GPU_DEVICE_KIND_NVSWITCH
                                          : common::v1::GPU_DEVICE_KIND_GPU);
    if (d.result.ok()) {
      VerifiedGpuToProto(*d.result, c);
    } else {
      RefusedGpuToProto(d.result.status(), *d.input, c);
    }
  }
  out->set_claims_json(v.claims_json);
  if (v.topology.has_value())
    out->set_ppcie_topology_check_passed(v.topology->ok());
  out->set_simulated(v.simulated);
  TimeToProto(v.verification_time, out->mutable_verification_time());
}

}  // namespace pml::attestation
