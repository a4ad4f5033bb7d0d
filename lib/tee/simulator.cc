#include "lib/tee/simulator.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"

namespace pml::tee {
namespace {

// Quote v4 constants (tdx-quote-verification.md §2.1, §2.3).
constexpr uint16_t kQuoteVersion4 = 4;
constexpr uint16_t kAttestationKeyTypeEcdsaP256 = 2;
constexpr uint32_t kTeeTypeTdx = 0x00000081;
constexpr uint16_t kCertDataQeReport = 6;       // QE report certification data
constexpr uint16_t kCertDataPckChain = 5;       // PCK cert chain, PEM
constexpr size_t kSignedRegionSize = 48 + 584;  // header + TD report 1.0
constexpr size_t kSgxReportSize = 384;
constexpr absl::string_view kRtmr3File = "rtmr3";

// Little-endian appenders; the quote is built front to back in spec order.
class Writer {
 public:
  void U16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
  }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  void Bytes(absl::Span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void Zeros(size_t n) { out_.insert(out_.end(), n, 0); }
  size_t size() const { return out_.size(); }
  std::vector<uint8_t>& data() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

template <size_t N>
std::array<uint8_t, N> LabelBytes(absl::string_view label) {
  static_assert(N <= 32);
  const crypto::Sha256Digest h = crypto::Sha256(label);
  std::array<uint8_t, N> out{};
  std::copy(h.begin(), h.begin() + N, out.begin());
  return out;
}

// A fixed stand-in for the TDX module's measurement (MRSEAM).
Measurement DefaultMrseam() { return crypto::Sha384("pml simulated tdx module v1"); }

// The SGX report body of the simulated TD QE (§2.2 "SGX enclave report").
std::vector<uint8_t> QeReport(const SimulatedTdxPki& pki, absl::Span<const uint8_t> report_data) {
  Writer w;
  w.Bytes(kSimulatedSgxTcbComponents);  // CPUSVN
  w.U32(0);                             // MISCSELECT
  w.Zeros(28);
  w.Bytes(kSimulatedQeAttributes);
  w.Bytes(pki.qe_mrenclave());
  w.Zeros(32);
  w.Bytes(pki.qe_mrsigner());
  w.Zeros(96);
  w.U16(kSimulatedQeIsvProdId);
  w.U16(kSimulatedQeIsvSvn);
  w.Zeros(60);
  w.Bytes(report_data);
  PML_CHECK(w.size() == kSgxReportSize);
  return std::move(w.data());
}

}  // namespace

TdxSimulator::TdxSimulator(SimulatorOptions options, SimulatedTdxPki pki, RtmrValues rtmrs)
    : options_(std::move(options)), pki_(std::move(pki)), rtmrs_(rtmrs) {}

absl::StatusOr<std::unique_ptr<TdxSimulator>> TdxSimulator::Create(
    const SimulatorOptions& options) {
  PML_ASSIGN_OR_RETURN(SimulatedTdxPki pki, SimulatedTdxPki::Create());
  RtmrValues rtmrs{options.rtmr0, options.rtmr1, options.rtmr2, Measurement{}};
  if (!options.state_dir.empty()) {
    const std::string path = absl::StrCat(options.state_dir, "/", kRtmr3File);
    if (core::PathExists(path)) {
      PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path, 1024));
      auto bytes = core::HexDecode(absl::StripAsciiWhitespace(text));
      if (!bytes.ok() || bytes->size() != kMeasurementSize) {
        return absl::InvalidArgumentError(
            absl::StrCat("simulator state ", path, ": rtmr3 is not 48 bytes of hex"));
      }
      std::copy(bytes->begin(), bytes->end(), rtmrs[3].begin());
    } else {
      PML_RETURN_IF_ERROR(core::MakeDirs(options.state_dir, 0700));
    }
  }
  return std::unique_ptr<TdxSimulator>(new TdxSimulator(options, std::move(pki), rtmrs));
}

absl::StatusOr<std::vector<uint8_t>> TdxSimulator::GetQuote(absl::Span<const uint8_t> report_data) {
  if (report_data.size() != kReportDataSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("report_data has ", report_data.size(), " bytes, want 64"));
  }
  RtmrValues rtmrs;
  {
    absl::MutexLock lock(&mu_);
    rtmrs = rtmrs_;
  }

  Writer w;
  // Header (§2.1).
  w.U16(kQuoteVersion4);
  w.U16(kAttestationKeyTypeEcdsaP256);
  w.U32(kTeeTypeTdx);
  w.U16(0);  // reserved (v4)
  w.U16(0);  // reserved (v4)
  w.Bytes(kIntelQeVendorId);
  w.Bytes(LabelBytes<16>("pml simulated td qe id v1"));  // user data: QE ID, then 4 zero bytes
  w.Zeros(4);
  // TD report 1.0 (§2.2).
  w.Bytes(options_.tee_tcb_svn.value_or(kSimulatedTeeTcbSvn));
  w.Bytes(options_.mrseam.value_or(DefaultMrseam()));
  w.Zeros(48);  // MRSIGNERSEAM: zero for Intel-signed modules (the TCB info's tdxModule.mrsigner)
  w.Zeros(8);   // SEAMATTRIBUTES: zero in production
  w.U64(options_.td_attributes);
  w.U64(options_.xfam);
  w.Bytes(options_.mrtd);
  w.Bytes(options_.mrconfigid);
  w.Bytes(options_.mrowner);
  w.Bytes(options_.mrownerconfig);
  for (const Measurement& r : rtmrs) {
    w.Bytes(r);
  }
  w.Bytes(report_data);
  PML_CHECK(w.size() == kSignedRegionSize);

  // Signature data (§2.3).
  PML_ASSIGN_OR_RETURN(
      std::vector<uint8_t> quote_sig,
      crypto::SignEcdsaRaw(pki_.attestation_key(), crypto::Digest::kSha256, w.data(), 32));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> ak_point,
                       crypto::PublicKeyToRawPoint(pki_.attestation_key()));
  PML_CHECK(ak_point.size() == 65);
  const absl::Span<const uint8_t> ak_raw = absl::MakeConstSpan(ak_point).subspan(1);

  // Real TD QEs use 32 bytes 00..1f as QE authentication data; so do we.
  std::vector<uint8_t> auth_data(32);
  for (size_t i = 0; i < auth_data.size(); ++i) {
    auth_data[i] = static_cast<uint8_t>(i);
  }
  const crypto::Sha256Digest ak_hash =
      crypto::Sha256(absl::StrCat(core::ToString(ak_raw), core::ToString(auth_data)));
  std::vector<uint8_t> binding(ak_hash.begin(), ak_hash.end());
  binding.resize(64, 0);  // QE REPORTDATA = SHA-256(attestation key ‖ auth data) ‖ 0^32
  const std::vector<uint8_t> qe_report = QeReport(pki_, binding);
  PML_ASSIGN_OR_RETURN(
      std::vector<uint8_t> qe_report_sig,
      crypto::SignEcdsaRaw(pki_.pck_key(), crypto::Digest::kSha256, qe_report, 32));

  std::string pem = pki_.PckChainPem();
  pem.push_back('\0');  // Intel's QE NUL-terminates the chain (§2.3 "observed")
  const size_t cert_data_size =
      qe_report.size() + qe_report_sig.size() + 2 + auth_data.size() + 2 + 4 + pem.size();
  const size_t sig_data_size = 64 + 64 + 2 + 4 + cert_data_size;

  w.U32(static_cast<uint32_t>(sig_data_size));
  w.Bytes(quote_sig);
  w.Bytes(ak_raw);
  w.U16(kCertDataQeReport);
  w.U32(static_cast<uint32_t>(cert_data_size));
  w.Bytes(qe_report);
  w.Bytes(qe_report_sig);
  w.U16(static_cast<uint16_t>(auth_data.size()));
  w.Bytes(auth_data);
  w.U16(kCertDataPckChain);
  w.U32(static_cast<uint32_t>(pem.size()));
  w.Bytes(core::AsBytes(pem));
  PML_CHECK(w.size() == kSignedRegionSize + 4 + sig_data_size);
  return std::move(w.data());
}

absl::Status TdxSimulator::ExtendRtmr(int index, absl::Span<const uint8_t> digest) {
  if (index < 0 || index >= kRtmrCount) {
    return absl::InvalidArgumentError(absl::StrCat("rtmr index ", index, " is outside 0..3"));
  }
  if (digest.size() != kMeasurementSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("rtmr digest has ", digest.size(), " bytes, want 48"));
  }
  absl::MutexLock lock(&mu_);
  Measurement& reg = rtmrs_[static_cast<size_t>(index)];
  const Measurement next = crypto::Sha384Concat({reg, digest});
  if (index == 3) {
    PML_RETURN_IF_ERROR(PersistRtmr3(next));
  }
  reg = next;
  return absl::OkStatus();
}

absl::StatusOr<RtmrValues> TdxSimulator::GetRtmrs() {
  absl::MutexLock lock(&mu_);
  return rtmrs_;
}

absl::Status TdxSimulator::PersistRtmr3(const Measurement& value) const {
  if (options_.state_dir.empty()) {
    return absl::OkStatus();
  }
  const std::string path = absl::StrCat(options_.state_dir, "/", kRtmr3File);
  absl::Status s = core::WriteFileAtomic(path, core::HexEncode(value) + "\n", 0600);
  if (!s.ok()) {
    return absl::InternalError(absl::StrCat("persisting simulated rtmr3: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace pml::tee
