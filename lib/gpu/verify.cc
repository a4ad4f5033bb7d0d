#include "lib/gpu/verify.h"

#include <algorithm>
#include <set>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ocsp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/internal/nvidia_roots.h"
#include "lib/gpu/simulated.h"

namespace pml::gpu {
namespace internal {

struct ChainEntry {
  std::vector<crypto::X509Ptr> chain;  // leaf first, ending with the pinned root
  std::vector<crypto::Sha256Digest> der_hashes;
  const EVP_PKEY* leaf_key = nullptr;  // borrowed from chain[0]
  Arch arch = Arch::kHopper;
  std::string hwmodel;
  std::string ueid;
  std::optional<std::vector<uint8_t>> fwid;
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfiniteFuture();
  bool simulated = false;  // ends at the simulated root (TrustAnchors::WithSimulatedRoot)
};

struct RimEntry {
  std::string sha256;
  absl::StatusOr<Rim> rim;
  absl::StatusOr<RimSignature> signature = absl::UnknownError("not verified");
  std::vector<crypto::Sha256Digest> chain_hashes;
};

struct OcspEntry {
  crypto::OcspResult result;
  bool nonce_matches = false;
  // A failed fetch or an invalid response, remembered until `retry_after` (verification time) so
  // that an unreachable responder costs one attempt per OcspSource::FailureTtl(), not one per
  // verification. Stored under a per-source key.
  std::string error;
  absl::Time retry_after = absl::InfinitePast();
};

}  // namespace internal

namespace {

using internal::ChainEntry;
using internal::OcspEntry;
using internal::RimEntry;

// OIDs of the FWID-carrying extensions (spec §4): Hopper / LS10 "tcg-dice-fwid"-like
// 2.23.133.5.4.1, Blackwell TCG DICE TcbInfo 2.23.133.5.4.1.1.
constexpr absl::string_view kHopperFwidOid = "2.23.133.5.4.1";
constexpr absl::string_view kTcbInfoOid = "2.23.133.5.4.1.1";
constexpr size_t kFwidSize = 48;

absl::Status Refused(absl::string_view cls, absl::string_view detail) {
  return MakeError(absl::StatusCode::kFailedPrecondition, cls, detail);
}

absl::StatusOr<crypto::X509Ptr> OnePem(absl::string_view pem, absl::string_view what) {
  auto certs = crypto::ParsePemCertificates(pem, 1);
  if (!certs.ok() || certs->size() != 1) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kCertChainMalformed,
                     absl::StrCat(what, " is not one PEM certificate"));
  }
  return std::move((*certs)[0]);
}

absl::Status CheckPin(const X509& cert, absl::string_view pin, absl::string_view what) {
  PML_ASSIGN_OR_RETURN(crypto::Sha256Digest spki, crypto::SpkiSha256(cert));
  if (core::HexEncode(spki) != pin) {
    return Refused(
        error_class::kCertChainUntrusted,
        absl::StrCat(what, " key sha256 ", core::HexEncode(spki), " is not the pinned NVIDIA key"));
  }
  return absl::OkStatus();
}

std::string DecimalSerial(const X509& cert) {
  const std::vector<uint8_t> serial = crypto::SerialNumber(cert);
  crypto::BignumPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (bn == nullptr)
    return "";
  char* dec = BN_bn2dec(bn.get());
  if (dec == nullptr)
    return "";
  std::string out(dec);
  OPENSSL_free(dec);
  return out;
}

absl::StatusOr<Arch> ArchFromLeaf(const X509& leaf) {
  const std::string cn = crypto::SubjectCommonName(leaf);
  if (absl::StartsWith(cn, "GH100 "))
    return Arch::kHopper;
  if (absl::StartsWith(cn, "GB1") || absl::StartsWith(cn, "GB2"))
    return Arch::kBlackwell;
  if (absl::StartsWith(cn, "LS_10 "))
    return Arch::kLs10;
  return Refused(
      error_class::kUnsupportedArch,
      absl::StrCat("leaf certificate \"", cn.substr(0, 64), "\" names no supported device"));
}

// A self-signed certificate carrying the simulated GPU root key.
bool IsSimulatedRoot(const X509& cert) {
  auto spki = crypto::SpkiSha256(cert);
  return spki.ok() && core::HexEncode(*spki) == kSimulatedGpuRootSpkiSha256 &&
         X509_check_issued(const_cast<X509*>(&cert), const_cast<X509*>(&cert)) == X509_V_OK;
}

absl::Status FwidMalformed(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kCertChainMalformed, detail);
}

// TcbInfo ::= SEQUENCE { vendor [0], model [1], version [2], svn [3], layer [4], index [5],
// fwids [6] IMPLICIT SEQUENCE OF FWID, ... }; FWID ::= SEQUENCE { hashAlg OID, digest OCTET
// STRING } (TCG DICE Attestation Architecture §6.1.1; NVAT get_fwid_2_23_133_5_4_1_1).
absl::StatusOr<std::optional<std::vector<uint8_t>>> TcbInfoFwid(absl::Span<const uint8_t> ext) {
  crypto::DerReader outer(ext);
  PML_ASSIGN_OR_RETURN(crypto::DerTlv seq, outer.Expect(crypto::kDerSequence, "TcbInfo"));
  crypto::DerReader fields(seq.content);
  while (!fields.empty()) {
    PML_ASSIGN_OR_RETURN(crypto::DerTlv f, fields.Next("TcbInfo field"));
    if (f.tag != 0xA6)
      continue;  // [6] constructed: fwids
    crypto::DerReader fwids(f.content);
    PML_ASSIGN_OR_RETURN(crypto::DerTlv fwid, fwids.Expect(crypto::kDerSequence, "FWID"));
    crypto::DerReader fr(fwid.content);
    PML_RETURN_IF_ERROR(fr.Expect(crypto::kDerOid, "FWID hashAlg").status());
    PML_ASSIGN_OR_RETURN(crypto::DerTlv digest, fr.Expect(crypto::kDerOctetString, "FWID digest"));
    return std::optional<std::vector<uint8_t>>(
        std::vector<uint8_t>(digest.content.begin(), digest.content.end()));
  }
  return std::optional<std::vector<uint8_t>>();
}

absl::StatusOr<std::optional<std::vector<uint8_t>>> CertFwid(const X509& leaf, Arch arch) {
  if (arch == Arch::kBlackwell) {
    PML_ASSIGN_OR_RETURN(auto tcb, crypto::FindExtension(leaf, kTcbInfoOid));
    if (tcb.has_value()) {
      auto fwid = TcbInfoFwid(*tcb);
      if (!fwid.ok())
        return FwidMalformed(absl::StrCat("TcbInfo: ", fwid.status().message()));
      return fwid;
    }
  }
  PML_ASSIGN_OR_RETURN(auto ext, crypto::FindExtension(leaf, kHopperFwidOid));
  if (!ext.has_value())
    return std::optional<std::vector<uint8_t>>();
  // SEQUENCE{INTEGER 1, SubjectPublicKeyInfo, SEQUENCE{OID sha384, OCTET STRING[48]}}: both
  // NVIDIA verifiers take the last 48 bytes.
  if (ext->size() < kFwidSize)
    return FwidMalformed("FWID extension is shorter than 48 bytes");
  return std::optional<std::vector<uint8_t>>(
      std::vector<uint8_t>(ext->end() - kFwidSize, ext->end()));
}

bool ChainStatusAcceptable(const CertChainClaims& c, const Policy& p, bool rim,
                           std::vector<std::string>& failures, absl::string_view name) {
  bool ok = true;
  const bool hold = c.cert_status == "revoked" && c.revocation_reason == "certificateHold";
  if (c.cert_status != "valid") {
    const bool allowed = rim && ((c.cert_status == "expired" && p.allow_expired_rim_cert) ||
                                 (hold && p.allow_rim_cert_hold));
    if (!allowed) {
      failures.push_back(absl::StrCat(name, " cert-status ", c.cert_status,
                                      c.detail.empty() ? "" : absl::StrCat(" (", c.detail, ")")));
      ok = false;
    }
  }
  if (p.require_ocsp && c.cert_status != "invalid") {
    const bool hold_ok = rim && hold && p.allow_rim_cert_hold;
    if ((c.ocsp_status != "good" && !hold_ok) || !c.ocsp_response_valid) {
      failures.push_back(absl::StrCat(name, " ocsp-status ", c.ocsp_status,
                                      c.ocsp_response_valid ? "" : " (no valid response)"));
      ok = false;
    } else if (p.require_ocsp_nonce && !c.ocsp_nonce_matches) {
      failures.push_back(absl::StrCat(name, " ocsp nonce not matched"));
      ok = false;
    }
  }
  return ok;
}

nlohmann::json ChainJson(const CertChainClaims& c) {
  nlohmann::json j;
  j["x-nvidia-cert-expiration-date"] = FormatClaimTime(c.expiration_date);
  j["x-nvidia-cert-status"] = c.cert_status;
  j["x-nvidia-cert-ocsp-status"] = c.ocsp_status;
  j["x-nvidia-cert-revocation-reason"] =
      c.revocation_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.revocation_reason);
  j["x-nvidia-cert-ocsp-nonce-matches"] = c.ocsp_nonce_matches;
  j["x-nvidia-cert-ocsp-response-valid"] = c.ocsp_response_valid;
  return j;
}

}  // namespace

// ---- TrustAnchors

std::string FormatClaimTime(absl::Time t) {
  if (t == absl::InfiniteFuture())
    return "9999-12-31T23:59:59Z";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<TrustAnchors> TrustAnchors::UnpinnedFromPem(absl::string_view device_root_pem,
                                                           absl::string_view rim_root_pem) {
  TrustAnchors a;
  PML_ASSIGN_OR_RETURN(a.device_root_, OnePem(device_root_pem, "device root"));
  PML_ASSIGN_OR_RETURN(a.rim_root_, OnePem(rim_root_pem, "RIM root"));
  return a;
}

absl::StatusOr<TrustAnchors> TrustAnchors::NvidiaFromPem(absl::string_view device_root_pem,
                                                         absl::string_view rim_root_pem) {
  PML_ASSIGN_OR_RETURN(TrustAnchors a, UnpinnedFromPem(device_root_pem, rim_root_pem));
  PML_RETURN_IF_ERROR(CheckPin(*a.device_root_, kNvidiaDeviceRootSpkiSha256, "device root"));
  PML_RETURN_IF_ERROR(CheckPin(*a.rim_root_, kNvidiaRimRootSpkiSha256, "RIM root"));
  return a;
}

absl::StatusOr<TrustAnchors> TrustAnchors::NvidiaFromFiles(absl::string_view device_root_path,
                                                           absl::string_view rim_root_path) {
  PML_ASSIGN_OR_RETURN(std::string d, core::ReadFile(device_root_path, 1 << 20));
  PML_ASSIGN_OR_RETURN(std::string r, core::ReadFile(rim_root_path, 1 << 20));
  return NvidiaFromPem(d, r);
}

TrustAnchors TrustAnchors::NvidiaDefault() {
  auto a = NvidiaFromPem(internal::kNvidiaDeviceRootPem, internal::kNvidiaRimRootPem);
  PML_CHECK(a.ok());  // a broken build, not an input error
  return *std::move(a);
}

TrustAnchors TrustAnchors::WithSimulatedRoot() const {
  TrustAnchors a(*this);
  a.trust_simulated_ = true;
  return a;
}

TrustAnchors::TrustAnchors(const TrustAnchors& other)
    : device_root_(crypto::CopyCertificate(*other.device_root_)),
      rim_root_(crypto::CopyCertificate(*other.rim_root_)),
      trust_simulated_(other.trust_simulated_) {}

TrustAnchors& TrustAnchors::operator=(const TrustAnchors& other) {
  if (this != &other) {
    device_root_ = crypto::CopyCertificate(*other.device_root_);
    rim_root_ = crypto::CopyCertificate(*other.rim_root_);
    trust_simulated_ = other.trust_simulated_;
  }
  return *this;
}

// ---- CachedOcspSource

absl::Status CachedOcspSource::Add(absl::Span<const uint8_t> der) {
  const unsigned char* p = der.data();
  std::unique_ptr<OCSP_RESPONSE, crypto::CDeleter<OCSP_RESPONSE_free>> resp(
      d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (resp == nullptr) {
    crypto::ClearOpensslErrors();
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kOcspResponseInvalid,
                     "response is not DER");
  }
  std::unique_ptr<OCSP_BASICRESP, crypto::CDeleter<OCSP_BASICRESP_free>> basic(
      OCSP_response_get1_basic(resp.get()));
  if (basic == nullptr) {
    crypto::ClearOpensslErrors();
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kOcspResponseInvalid,
                     "response has no basic response");
  }
  std::vector<std::string> serials;
  for (int i = 0; i < OCSP_resp_count(basic.get()); ++i) {
    OCSP_SINGLERESP* single = OCSP_resp_get0(basic.get(), i);
    const OCSP_CERTID* id = OCSP_SINGLERESP_get0_id(single);
    ASN1_INTEGER* serial = nullptr;
    if (OCSP_id_get0_info(nullptr, nullptr, nullptr, &serial, const_cast<OCSP_CERTID*>(id)) != 1 ||
        serial == nullptr) {
      continue;
    }
    crypto::BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
    if (bn == nullptr)
      continue;
    std::vector<uint8_t> bytes(static_cast<size_t>(BN_num_bytes(bn.get())));
    BN_bn2bin(bn.get(), bytes.data());
    serials.push_back(core::HexEncode(bytes));
  }
  if (serials.empty()) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kOcspResponseInvalid,
                     "response has no SingleResponse");
  }
  absl::MutexLock lock(&mu_);
  for (const auto& s : serials)
    by_serial_[s] = std::vector<uint8_t>(der.begin(), der.end());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> CachedOcspSource::GetResponse(
    const X509& cert, const X509& /*issuer*/, absl::Span<const uint8_t> /*nonce*/) {
  const std::string serial = core::HexEncode(crypto::SerialNumber(cert));
  absl::MutexLock lock(&mu_);
  auto it = by_serial_.find(serial);
  if (it == by_serial_.end()) {
    return MakeError(absl::StatusCode::kNotFound, error_class::kOcspNotFound,
                     absl::StrCat("no stored response for serial ", serial.substr(0, 64)));
  }
  return it->second;
}

// ---- VerifiedGpu / VerifiedSet

nlohmann::json VerifiedGpu::Claims() const {
  const bool sw = is_switch();
  const std::string p = sw ? "x-nvidia-switch-" : "x-nvidia-gpu-";
  const std::string vb = sw ? "bios" : "vbios";
  nlohmann::json j;
  j["measres"] = measres_ ? "success" : "fail";
  j["secboot"] = measres_ ? nlohmann::json(true) : nlohmann::json(nullptr);
  j["dbgstat"] = measres_ ? nlohmann::json("disabled") : nlohmann::json(nullptr);
  j["eat_nonce"] = core::HexEncode(report_.nonce);
  j["hwmodel"] = hwmodel_;
  j["ueid"] = ueid_;
  j["oemid"] = oemid_;
  j["x-nvidia-device-type"] = sw ? "nvswitch" : "gpu";
  if (match_.mismatches.empty()) {
    j["x-nvidia-mismatch-measurement-records"] = nullptr;
  } else {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& m : match_.mismatches) {
      arr.push_back({{"index", m.index},
                     {"goldenSize", m.golden_size},
                     {"goldenValue", core::HexEncode(m.golden_value)},
                     {"runtimeSize", m.runtime_size},
                     {"runtimeValue", core::HexEncode(m.runtime_value)},
                     {"measurementSource", RimKindName(m.source)}});
    }
    j["x-nvidia-mismatch-measurement-records"] = arr;
  }
  j[p + "arch-check"] = true;
  if (!sw)
    j[p + "driver-version"] = driver_version_;
  j[p + vb + "-version"] = vbios_version_;
  if (!switch_pdis_.empty())
    j[sw ? p + "pdi" : p + "switch-pdis"] = switch_pdis_;
  j[p + "attestation-report-cert-chain"] = ChainJson(device_chain_);
  j[p + "attestation-report-cert-chain-fwid-match"] = true;
  j[p + "attestation-report-parsed"] = true;
  j[p + "attestation-report-nonce-match"] = true;
  j[p + "attestation-report-signature-verified"] = true;
  auto rim_claims = [&](const RimClaims& r, const std::string& name) {
    j[p + name + "-rim-fetched"] = r.fetched;
    j[p + name + "-rim-cert-chain"] = ChainJson(r.cert_chain);
    j[p + name + "-rim-signature-verified"] = r.signature_verified;
    j[p + name + "-rim-version-match"] = r.version_match;
    j[p + name + "-rim-measurements-available"] = r.measurements_available;
  };
  if (!sw)
    rim_claims(driver_rim_, "driver");
  rim_claims(vbios_rim_, vb);
  if (!sw)
    j[p + "vbios-index-no-conflict"] = match_.index_no_conflict;
  if (simulated_)
    j["x-pml-simulated"] = true;
  return j;
}

bool VerifiedSet::Passed() const {
  for (const auto& g : gpus_) {
    if (!g.Passed())
      return false;
  }
  for (const auto& s : switches_) {
    if (!s.Passed())
      return false;
  }
  return !gpus_.empty();
}

bool VerifiedSet::simulated() const {
  for (const auto* list : {&gpus_, &switches_}) {
    for (const auto& d : *list) {
      if (d.simulated())
        return true;
    }
  }
  return false;
}

nlohmann::json VerifiedSet::Claims() const {
  nlohmann::json j;
  j["x-nvidia-overall-att-result"] = Passed();
  for (size_t i = 0; i < gpus_.size(); ++i)
    j[absl::StrCat("GPU-", i)] = gpus_[i].Claims();
  for (size_t i = 0; i < switches_.size(); ++i) {
    j[absl::StrCat("SWITCH-", i)] = switches_[i].Claims();
  }
  return j;
}

// ---- Topology

absl::Status CheckPpcieTopology(absl::Span<const Report* const> gpus,
                                absl::Span<const Report* const> switches) {
  auto mismatch = [](absl::string_view d) { return Refused(error_class::kTopologyMismatch, d); };
  if (gpus.size() != 8 || switches.size() != 4) {
    return mismatch(absl::StrCat("PPCIe needs 8 GPUs and 4 switches, got ", gpus.size(), " and ",
                                 switches.size()));
  }
  std::set<std::string> gpu_set;
  for (size_t i = 0; i < gpus.size(); ++i) {
    PML_ASSIGN_OR_RETURN(std::vector<std::string> pdis, GpuSwitchPdis(*gpus[i]));
    std::set<std::string> s(pdis.begin(), pdis.end());
    if (s.size() != switches.size()) {
      return mismatch(absl::StrCat("GPU-", i, " reports ", s.size(), " unique switch PDIs, want ",
                                   switches.size()));
    }
    if (i == 0) {
      gpu_set = s;
    } else if (s != gpu_set) {
      return mismatch(absl::StrCat("GPU-", i, " switch PDIs differ from GPU-0's"));
    }
  }
  std::set<std::string> seen;
  std::set<std::string> switch_gpu_set;
  for (size_t i = 0; i < switches.size(); ++i) {
    PML_ASSIGN_OR_RETURN(std::string pdi, SwitchDevicePdi(*switches[i]));
    if (gpu_set.count(pdi) == 0) {
      return mismatch(
          absl::StrCat("SWITCH-", i, " PDI ", pdi, " is not among the GPUs' switch PDIs"));
    }
    if (!seen.insert(pdi).second)
      return mismatch(absl::StrCat("SWITCH-", i, " PDI ", pdi, " repeats"));
    PML_ASSIGN_OR_RETURN(std::vector<std::string> gp, SwitchGpuPdis(*switches[i]));
    std::set<std::string> s(gp.begin(), gp.end());
    if (s.size() != gpus.size()) {
      return mismatch(
          absl::StrCat("SWITCH-", i, " lists ", s.size(), " unique GPU PDIs, want ", gpus.size()));
    }
    if (i == 0) {
      switch_gpu_set = s;
    } else if (s != switch_gpu_set) {
      return mismatch(absl::StrCat("SWITCH-", i, " GPU PDIs differ from SWITCH-0's"));
    }
  }
  return absl::OkStatus();
}

// ---- Verifier

Verifier::Verifier(TrustAnchors anchors, Options options)
    : anchors_(std::move(anchors)), options_(options) {}
Verifier::~Verifier() = default;

Verifier::CacheStats Verifier::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::StatusOr<std::shared_ptr<const ChainEntry>> Verifier::Chain(absl::string_view pem) {
  const std::string key = core::HexEncode(crypto::Sha256(pem));
  {
    absl::MutexLock lock(&mu_);
    auto it = chains_.find(key);
    if (it != chains_.end()) {
      ++stats_.chain_hits;
      return it->second;
    }
    ++stats_.chain_misses;
  }
  auto certs = crypto::ParsePemCertificates(pem);
  if (!certs.ok())
    return WithClass(certs.status(), error_class::kCertChainMalformed);
  // The simulated root is trusted by key: the chain's own last certificate, when it carries the
  // pinned simulated key, is the anchor (its signature bytes differ between runs).
  const X509* anchor = &anchors_.device_root();
  bool simulated = false;
  if (IsSimulatedRoot(anchors_.device_root())) {
    simulated = true;  // a test's explicit anchor: the simulated root itself
  } else if (!certs->empty() && IsSimulatedRoot(*certs->back())) {
    if (!anchors_.trusts_simulated()) {
      return Refused(error_class::kCertChainUntrusted,
                     "the chain ends at the simulated GPU root of lib/tee, which this verifier "
                     "does not trust (simulated evidence needs --trust-simulated-tee)");
    }
    anchor = certs->back().get();
    simulated = true;
  }
  auto chain = crypto::VerifyChainToAnchor(*certs, *anchor, {.at = std::nullopt, .strict = true});
  if (!chain.ok())
    return WithClass(chain.status(), error_class::kCertChainUntrusted);
  auto entry = std::make_shared<ChainEntry>();
  entry->chain = *std::move(chain);
  entry->simulated = simulated;
  const X509& leaf = *entry->chain[0];
  PML_ASSIGN_OR_RETURN(entry->arch, ArchFromLeaf(leaf));
  auto key_or = crypto::CertificatePublicKey(leaf);
  if (!key_or.ok())
    return WithClass(key_or.status(), error_class::kCertChainMalformed);
  entry->leaf_key = *key_or;
  if (EVP_PKEY_get_bits(entry->leaf_key) != 384 ||
      EVP_PKEY_get_base_id(entry->leaf_key) != EVP_PKEY_EC) {
    return Refused(error_class::kCertChainUntrusted, "leaf key is not ECDSA P-384");
  }
  entry->hwmodel = entry->chain.size() > 1 ? crypto::SubjectCommonName(*entry->chain[1]) : "";
  entry->ueid = DecimalSerial(leaf);
  PML_ASSIGN_OR_RETURN(entry->fwid, CertFwid(leaf, entry->arch));
  for (const auto& c : entry->chain) {
    auto v = crypto::CertificateValidity(*c);
    if (!v.ok())
      return WithClass(v.status(), error_class::kCertChainMalformed);
    entry->not_before = std::max(entry->not_before, v->not_before);
    entry->not_after = std::min(entry->not_after, v->not_after);
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, crypto::CertificateDer(*c));
    entry->der_hashes.push_back(crypto::Sha256(der));
  }
  absl::MutexLock lock(&mu_);
  if (chains_.size() >= options_.max_chains)
    chains_.clear();
  chains_[key] = entry;
  return std::shared_ptr<const ChainEntry>(entry);
}

CertChainClaims Verifier::ChainClaims(const std::vector<crypto::X509Ptr>& chain,
                                      const std::vector<crypto::Sha256Digest>& der_hashes,
                                      size_t first_checked, absl::Time not_before,
                                      absl::Time not_after, const VerifyOptions& options) {
  CertChainClaims c;
  c.expiration_date = not_after;
  if (options.now > not_after) {
    c.cert_status = "expired";
    c.detail = absl::StrCat("a certificate expired at ", FormatClaimTime(not_after));
  } else if (options.now < not_before) {
    c.cert_status = "expired";
    c.detail = absl::StrCat("a certificate is not valid before ", FormatClaimTime(not_before));
  } else {
    c.cert_status = "valid";
  }
  if (options.ocsp == nullptr) {
    c.detail = c.detail.empty() ? "no OCSP source" : c.detail;
    return c;
  }
  c.ocsp_source = "source";
  bool all_good = true, all_valid = true, all_nonce = true;
  for (size_t i = first_checked; i + 1 < chain.size(); ++i) {
    const std::string key = core::HexEncode(der_hashes[i]);
    // Failures are remembered per source (only sources that ask for it, which outlive the
    // verifier's use of them), so one source's outage never hides another's responses.
    const absl::Duration failure_ttl = options.ocsp->FailureTtl();
    const std::string negative_key =
        absl::StrCat("failed|", reinterpret_cast<uintptr_t>(options.ocsp), "|", key);
    std::shared_ptr<const OcspEntry> entry;
    {
      absl::MutexLock lock(&mu_);
      auto it = ocsp_.find(key);
      if (it != ocsp_.end() && options.now <= it->second->result.next_update &&
          options.now + absl::Minutes(5) >= it->second->result.this_update) {
        entry = it->second;
        ++stats_.ocsp_hits;
      } else if (auto neg = ocsp_.find(negative_key);
                 failure_ttl > absl::ZeroDuration() && neg != ocsp_.end() &&
                 options.now < neg->second->retry_after &&
                 options.now + failure_ttl >= neg->second->retry_after) {
        entry = neg->second;
        ++stats_.ocsp_hits;
      } else {
        ++stats_.ocsp_fetches;
      }
    }
    if (entry == nullptr) {
      std::vector<uint8_t> nonce;
      if (options.ocsp->SendsNonce())
        nonce = crypto::RandomBytes(32);
      auto der = options.ocsp->GetResponse(*chain[i], *chain[i + 1], nonce);
      absl::StatusOr<crypto::OcspResult> result =
          der.ok() ? crypto::CheckOcspResponse(*der, *chain[i], *chain[i + 1], *chain.back(), chain,
                                               options.now)
                   : absl::StatusOr<crypto::OcspResult>(der.status());
      auto fresh = std::make_shared<OcspEntry>();
      if (result.ok()) {
        fresh->result = *std::move(result);
        fresh->nonce_matches =
            !nonce.empty() && fresh->result.nonce.has_value() && *fresh->result.nonce == nonce;
      } else {
        fresh->error =
            absl::StrCat("ocsp for \"", crypto::SubjectCommonName(*chain[i]).substr(0, 64),
                         "\": ", result.status().message());
        fresh->retry_after = options.now + failure_ttl;
      }
      entry = fresh;
      if (fresh->error.empty() || failure_ttl > absl::ZeroDuration()) {
        absl::MutexLock lock(&mu_);
        if (ocsp_.size() >= options_.max_ocsp)
          ocsp_.clear();
        ocsp_[fresh->error.empty() ? key : negative_key] = entry;
      }
    }
    if (!entry->error.empty()) {
      all_valid = false;
      all_good = false;
      all_nonce = false;
      c.detail = entry->error;
      continue;
    }
    all_nonce = all_nonce && entry->nonce_matches;
    if (entry->result.status == crypto::OcspCertStatus::kRevoked) {
      c.ocsp_status = "revoked";
      c.cert_status = "revoked";
      c.revocation_reason = entry->result.revocation_reason;
      all_good = false;
    } else if (entry->result.status != crypto::OcspCertStatus::kGood) {
      all_good = false;
    }
  }
  c.ocsp_response_valid = all_valid;
  c.ocsp_nonce_matches = all_valid && all_nonce;
  if (all_good && all_valid)
    c.ocsp_status = "good";
  return c;
}

std::shared_ptr<const RimEntry> Verifier::RimFor(absl::string_view id, RimSource& source,
                                                 absl::Time now, absl::Status* fetch_error) {
  const std::string id_key = absl::StrCat(reinterpret_cast<uintptr_t>(&source), "|", id);
  {
    absl::MutexLock lock(&mu_);
    auto it = rim_ids_.find(id_key);
    if (it != rim_ids_.end() && now - it->second.fetched_at < options_.rim_id_ttl) {
      auto r = rims_.find(it->second.sha256);
      if (r != rims_.end()) {
        ++stats_.rim_hits;
        return r->second;
      }
    }
    ++stats_.rim_fetches;
  }
  auto xml = source.GetRim(id);
  if (!xml.ok()) {
    *fetch_error = xml.status();
    return nullptr;
  }
  const std::string sha = core::HexEncode(crypto::Sha256(*xml));
  std::shared_ptr<const RimEntry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto r = rims_.find(sha);
    if (r != rims_.end())
      entry = r->second;
  }
  if (entry == nullptr) {
    auto fresh = std::make_shared<RimEntry>();
    fresh->sha256 = sha;
    fresh->rim = ParseRim(*xml);
    if (fresh->rim.ok()) {
      fresh->signature = VerifyRim(*fresh->rim, anchors_.rim_root());
      if (fresh->signature.ok()) {
        for (const auto& c : fresh->signature->chain) {
          auto der = crypto::CertificateDer(*c);
          fresh->chain_hashes.push_back(der.ok() ? crypto::Sha256(*der) : crypto::Sha256Digest{});
        }
      }
    }
    entry = fresh;
  }
  absl::MutexLock lock(&mu_);
  ++stats_.rim_misses;
  if (rims_.size() >= options_.max_rims) {
    rims_.clear();
    rim_ids_.clear();
  }
  rims_[sha] = entry;
  rim_ids_[id_key] = RimIdEntry{sha, now};
  return entry;
}

void Verifier::FillRim(const Report& report, Arch arch, bool driver, const VerifyOptions& options,
                       RimClaims& claims, std::shared_ptr<const RimEntry>& entry) {
  auto id = driver ? DriverRimId(report, arch) : VbiosRimId(report, arch);
  if (!id.ok()) {
    claims.detail = std::string(id.status().message());
    return;
  }
  claims.id = *id;
  if (options.rims == nullptr) {
    claims.detail = "no RIM source";
    return;
  }
  absl::Status fetch_error;
  entry = RimFor(*id, *options.rims, options.now, &fetch_error);
  if (entry == nullptr) {
    claims.detail = std::string(fetch_error.message());
    return;
  }
  claims.fetched = true;
  claims.sha256 = entry->sha256;
  if (!entry->rim.ok()) {
    claims.detail = std::string(entry->rim.status().message());
    return;
  }
  const Rim& rim = *entry->rim;
  claims.rim_version = rim.colloquial_version;
  const std::string runtime =
      driver ? DriverVersion(report).value_or("") : VbiosVersion(report, arch).value_or("");
  claims.version_match = !runtime.empty() && absl::AsciiStrToUpper(runtime) ==
                                                 absl::AsciiStrToUpper(rim.colloquial_version);
  if (!entry->signature.ok()) {
    claims.detail = std::string(entry->signature.status().message());
    claims.signature_verified =
        ErrorClass(entry->signature.status()) == error_class::kRimChainUntrusted;
    claims.cert_chain.detail = claims.detail;
    return;
  }
  claims.signature_verified = true;
  const RimSignature& sig = *entry->signature;
  claims.cert_chain =
      ChainClaims(sig.chain, entry->chain_hashes, 0, sig.not_before, sig.not_after, options);
  claims.measurements_available = true;
  if (!claims.version_match) {
    claims.detail = absl::StrCat("RIM version ", rim.colloquial_version.substr(0, 64),
                                 " is not the report's ", runtime);
  }
}

absl::StatusOr<VerifiedGpu> Verifier::Verify(const Report& report, absl::string_view cert_chain_pem,
                                             const Nonce& nonce, const VerifyOptions& options) {
  if (options.now == absl::InfinitePast()) {
    return absl::InvalidArgumentError("VerifyOptions.now is not set");
  }
  if (report.raw.size() <= kSignatureSize) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kReportMalformed,
                     "report is shorter than its signature");
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const ChainEntry> chain, Chain(cert_chain_pem));
  if (options.expected_arch.has_value() && *options.expected_arch != chain->arch) {
    return Refused(error_class::kArchMismatch,
                   absl::StrCat("evidence claims ", ArchName(*options.expected_arch),
                                " but the leaf certificate is ", ArchName(chain->arch)));
  }
  // §3: ECDSA P-384 / SHA-384 over everything but the trailing 96-byte r||s.
  absl::Status sig = crypto::VerifyEcdsaRaw(*chain->leaf_key, crypto::Digest::kSha384,
                                            report.SignedBytes(), report.Signature());
  if (!sig.ok()) {
    return Refused(error_class::kInvalidReportSignature,
                   absl::StrCat("report signature does not verify with the leaf key of \"",
                                crypto::SubjectCommonName(*chain->chain[0]).substr(0, 64), "\""));
  }
  if (CRYPTO_memcmp(report.nonce.data(), nonce.data(), kNonceSize) != 0) {
    return Refused(
        error_class::kNonceMismatch,
        absl::StrCat("report nonce ", core::HexEncode(report.nonce), " is not the expected nonce"));
  }
  PML_ASSIGN_OR_RETURN(std::optional<std::vector<uint8_t>> fwid, Fwid(report));
  if (fwid.has_value()) {
    if (!chain->fwid.has_value()) {
      return Refused(error_class::kFwidMismatch, "report has a FWID but the leaf certificate none");
    }
    if (*fwid != *chain->fwid) {
      return Refused(error_class::kFwidMismatch,
                     absl::StrCat("report FWID ", core::HexEncode(*fwid), " is not the leaf's ",
                                  core::HexEncode(*chain->fwid)));
    }
  }

  VerifiedGpu out;
  out.report_ = report;
  out.arch_ = chain->arch;
  out.hwmodel_ = chain->hwmodel;
  out.ueid_ = chain->ueid;
  out.fwid_present_ = fwid.has_value();
  out.verified_at_ = options.now;
  const bool sw = IsSwitch(chain->arch);
  if (!sw) {
    PML_ASSIGN_OR_RETURN(out.driver_version_, DriverVersion(report));
    PML_ASSIGN_OR_RETURN(out.switch_pdis_, GpuSwitchPdis(report));
  } else if (report.FindOpaque(opaque::kSwitchPdi) != nullptr) {
    PML_ASSIGN_OR_RETURN(std::string pdi, SwitchDevicePdi(report));
    out.switch_pdis_.push_back(pdi);
  }
  PML_ASSIGN_OR_RETURN(out.vbios_version_, VbiosVersion(report, chain->arch));
  out.simulated_ = chain->simulated;
  // Simulated devices: nothing revokes a simulated certificate and no NVIDIA RIM describes a
  // simulated GPU, so OCSP is not asked and the golden values of simulated.h stand in for RIMs.
  VerifyOptions effective = options;
  std::optional<Rim> sim_driver, sim_vbios;
  if (chain->simulated) {
    effective.ocsp = nullptr;
    effective.policy.require_ocsp = false;
    sim_driver = SimulatedGoldenRim(RimKind::kDriver, out.driver_version_, out.vbios_version_);
    sim_vbios = SimulatedGoldenRim(RimKind::kVbios, out.driver_version_, out.vbios_version_);
  }
  out.device_chain_ = ChainClaims(chain->chain, chain->der_hashes, 1, chain->not_before,
                                  chain->not_after, effective);
  if (chain->simulated) {
    out.device_chain_.ocsp_source = "simulated";
    out.device_chain_.detail = "simulated device chain: no OCSP";
  }

  std::shared_ptr<const RimEntry> driver_entry, vbios_entry;
  const Rim* driver_rim = nullptr;
  const Rim* vbios_rim = nullptr;
  if (chain->simulated) {
    auto golden = [](const Rim& rim, RimClaims& c) {
      c.id = std::string(kSimulatedGoldenRimId);
      c.fetched = true;
      c.version_match = true;
      c.measurements_available = true;
      c.rim_version = rim.colloquial_version;
      c.cert_chain.ocsp_source = "simulated";
      c.detail = "simulated golden measurements, not an NVIDIA RIM";
      c.cert_chain.detail = c.detail;
    };
    if (!sw) {
      golden(*sim_driver, out.driver_rim_);
      driver_rim = &*sim_driver;
    }
    golden(*sim_vbios, out.vbios_rim_);
    vbios_rim = &*sim_vbios;
  } else {
    if (!sw)
      FillRim(report, chain->arch, true, options, out.driver_rim_, driver_entry);
    FillRim(report, chain->arch, false, options, out.vbios_rim_, vbios_entry);
    driver_rim = out.driver_rim_.measurements_available ? &*driver_entry->rim : nullptr;
    vbios_rim = out.vbios_rim_.measurements_available ? &*vbios_entry->rim : nullptr;
  }
  if (vbios_rim != nullptr)
    out.oemid_ = vbios_rim->firmware_manufacturer_id;
  if (out.oemid_.empty() && driver_rim != nullptr)
    out.oemid_ = driver_rim->firmware_manufacturer_id;
  PML_ASSIGN_OR_RETURN(out.match_, MatchMeasurements(report, driver_rim, vbios_rim));

  // Verdict (NVAT default policy, spec §6).
  auto& f = out.failures_;
  const bool driver_ok = sw || (driver_rim != nullptr && out.driver_rim_.version_match);
  const bool vbios_ok = vbios_rim != nullptr && out.vbios_rim_.version_match;
  out.measres_ = driver_ok && vbios_ok && out.match_.success();
  if (!driver_ok) {
    f.push_back(
        absl::StrCat("driver RIM ", out.driver_rim_.id, " unusable: ", out.driver_rim_.detail));
  }
  if (!vbios_ok) {
    f.push_back(
        absl::StrCat("VBIOS RIM ", out.vbios_rim_.id, " unusable: ", out.vbios_rim_.detail));
  }
  if (!out.match_.index_no_conflict)
    f.push_back("an index is active in both RIMs");
  if (!out.match_.mismatches.empty()) {
    std::vector<uint32_t> idx;
    for (const auto& m : out.match_.mismatches)
      idx.push_back(m.index);
    f.push_back(absl::StrCat("measurement mismatch at RIM indices ", absl::StrJoin(idx, ",")));
  }
  if (options.policy.require_fwid && !fwid.has_value())
    f.push_back("report has no FWID");
  ChainStatusAcceptable(out.device_chain_, effective.policy, false, f, "device chain");
  if (chain->simulated)
    return out;  // no RIM chains
  if (!sw && driver_rim != nullptr) {
    ChainStatusAcceptable(out.driver_rim_.cert_chain, options.policy, true, f, "driver RIM chain");
  }
  if (vbios_rim != nullptr) {
    ChainStatusAcceptable(out.vbios_rim_.cert_chain, options.policy, true, f, "VBIOS RIM chain");
  }
  return out;
}

absl::StatusOr<VerifiedGpu> Verifier::Verify(const DeviceEvidence& evidence, const Nonce& nonce,
                                             const VerifyOptions& options) {
  PML_ASSIGN_OR_RETURN(Report report, ParseReport(evidence.report));
  VerifyOptions o = options;
  if (evidence.arch.has_value() && !o.expected_arch.has_value())
    o.expected_arch = evidence.arch;
  return Verify(report, evidence.certificate_chain, nonce, o);
}

SetOutcome Verifier::VerifyEach(absl::Span<const DeviceEvidence> gpus,
                                absl::Span<const DeviceEvidence> switches, const Nonce& nonce,
                                const VerifyOptions& options) {
  SetOutcome out;
  std::optional<Arch> gpu_arch;
  std::set<uint16_t> modes;
  for (size_t i = 0; i < gpus.size(); ++i) {
    absl::StatusOr<VerifiedGpu> v = Verify(gpus[i], nonce, options);
    if (v.ok() && v->is_switch()) {
      v = Refused(error_class::kArchMismatch, absl::StrCat("GPU-", i, " is an NVSwitch"));
    } else if (v.ok() && gpu_arch.has_value() && v->arch() != *gpu_arch) {
      v = Refused(error_class::kArchMismatch,
                  absl::StrCat("GPU-", i, " is ", ArchName(v->arch()), ", the first GPU is ",
                               ArchName(*gpu_arch)));
    }
    if (v.ok()) {
      gpu_arch = gpu_arch.value_or(v->arch());
      auto flag = FeatureFlag(v->report());
      if (!flag.ok()) {
        v = flag.status();
      } else if (flag->has_value() && **flag <= 1) {
        modes.insert(**flag);
      }
    }
    out.gpus.push_back(std::move(v));
  }
  for (size_t i = 0; i < switches.size(); ++i) {
    absl::StatusOr<VerifiedGpu> v = Verify(switches[i], nonce, options);
    if (v.ok() && !v->is_switch()) {
      v = Refused(error_class::kArchMismatch, absl::StrCat("SWITCH-", i, " is not an NVSwitch"));
    }
    out.switches.push_back(std::move(v));
  }
  if (modes.size() > 1) {
    out.topology =
        Refused(error_class::kTopologyMismatch, "GPUs mix single-GPU and multi-GPU passthrough");
    return out;
  }
  if (switches.empty())
    return out;
  std::vector<const Report*> g, sw;
  for (const auto* list : {&out.gpus, &out.switches}) {
    for (const auto& v : *list) {
      if (!v.ok())
        return out;  // topology is checked over verified reports only
      (list == &out.gpus ? g : sw).push_back(&v->report());
    }
  }
  out.topology = CheckPpcieTopology(g, sw);
  return out;
}

absl::StatusOr<VerifiedSet> Verifier::VerifySet(absl::Span<const DeviceEvidence> gpus,
                                                absl::Span<const DeviceEvidence> switches,
                                                const Nonce& nonce, const VerifyOptions& options) {
  if (gpus.empty())
    return absl::InvalidArgumentError("no GPU evidence");
  SetOutcome each = VerifyEach(gpus, switches, nonce, options);
  VerifiedSet set;
  for (size_t i = 0; i < each.gpus.size(); ++i) {
    if (!each.gpus[i].ok())
      return core::Annotate(each.gpus[i].status(), absl::StrCat("GPU-", i));
    set.gpus_.push_back(*std::move(each.gpus[i]));
  }
  for (size_t i = 0; i < each.switches.size(); ++i) {
    if (!each.switches[i].ok())
      return core::Annotate(each.switches[i].status(), absl::StrCat("SWITCH-", i));
    set.switches_.push_back(*std::move(each.switches[i]));
  }
  if (each.topology.has_value()) {
    PML_RETURN_IF_ERROR(*each.topology);
    set.topology_checked_ = !switches.empty();
  }
  return set;
}

bool SetOutcome::Passed() const {
  if (gpus.empty() && switches.empty())
    return false;
  if (topology.has_value() && !topology->ok())
    return false;
  for (const auto* list : {&gpus, &switches}) {
    for (const auto& v : *list) {
      if (!v.ok() || !v->Passed())
        return false;
    }
  }
  return true;
}

bool SetOutcome::simulated() const {
  for (const auto* list : {&gpus, &switches}) {
    for (const auto& v : *list) {
      if (v.ok() && v->simulated())
        return true;
    }
  }
  return false;
}

nlohmann::json SetOutcome::Claims() const {
  nlohmann::json j;
  j["x-nvidia-overall-att-result"] = Passed();
  auto add = [&j](const std::vector<absl::StatusOr<VerifiedGpu>>& list, absl::string_view name) {
    for (size_t i = 0; i < list.size(); ++i) {
      nlohmann::json d;
      if (list[i].ok()) {
        d = list[i]->Claims();
      } else {
        d["x-nvidia-error"] = std::string(list[i].status().message());
        d["x-nvidia-overall-att-result"] = false;
      }
      j[absl::StrCat(name, "-", i)] = std::move(d);
    }
  };
  add(gpus, "GPU");
  add(switches, "SWITCH");
  if (topology.has_value()) {
    j["x-pml-ppcie-topology-check"] = topology->ok();
    if (!topology->ok())
      j["x-pml-ppcie-topology-error"] = std::string(topology->message());
  }
  return j;
}

absl::StatusOr<VerifiedGpu> VerifyReport(const Report& report, absl::string_view cert_chain_pem,
                                         const TrustAnchors& anchors, const Nonce& nonce,
                                         const VerifyOptions& options) {
  Verifier verifier(anchors);
  return verifier.Verify(report, cert_chain_pem, nonce, options);
}

}  // namespace pml::gpu
