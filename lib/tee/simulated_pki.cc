#include "lib/tee/simulated_pki.h"

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/x509.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/tee/internal/der_writer.h"

namespace pml::tee {
namespace {

using OrderedJson = nlohmann::ordered_json;

// Intel's SGX extension OID (tdx-quote-verification.md §3); sub-OIDs hang below it.
constexpr absl::string_view kSgxExtensionOid = "1.2.840.113741.1.13.1";

// Fixed validity of every simulated certificate, so that independent processes issue the same
// TBSCertificate. Intel's root runs to 2049-12-31 as well.
absl::Time CertNotBefore() {
  return absl::FromCivil(absl::CivilSecond(2024, 1, 1, 0, 0, 0), absl::UTCTimeZone());
}
absl::Time CertNotAfter() {
  return absl::FromCivil(absl::CivilSecond(2049, 12, 31, 23, 59, 59), absl::UTCTimeZone());
}

using internal::Seq;
using internal::Tlv;

std::vector<uint8_t> SeqOf(const std::vector<std::vector<uint8_t>>& items) {
  std::vector<uint8_t> content;
  for (const auto& item : items) {
    content.insert(content.end(), item.begin(), item.end());
  }
  return Tlv(0x30, content);
}

// OBJECT IDENTIFIER from dotted text (first arc 1 or 2, as all ours are).
std::vector<uint8_t> Oid(absl::string_view dotted) {
  std::vector<uint64_t> arcs;
  for (absl::string_view part : absl::StrSplit(dotted, '.')) {
    uint64_t v = 0;
    for (char c : part) {
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    arcs.push_back(v);
  }
  PML_CHECK(arcs.size() >= 2);
  std::vector<uint8_t> content;
  auto base128 = [&content](uint64_t v) {
    uint8_t buf[10];
    int n = 0;
    do {
      buf[n++] = static_cast<uint8_t>(v & 0x7F);
      v >>= 7;
    } while (v != 0);
    for (int i = n - 1; i >= 0; --i) {
      content.push_back(buf[i] | (i > 0 ? 0x80 : 0x00));
    }
  };
  base128(arcs[0] * 40 + arcs[1]);
  for (size_t i = 2; i < arcs.size(); ++i) {
    base128(arcs[i]);
  }
  return Tlv(0x06, content);
}

// Non-negative INTEGER (tag 0x02) or ENUMERATED (0x0A), minimal two's complement.
std::vector<uint8_t> UnsignedInt(uint64_t v, uint8_t tag = 0x02) {
  std::vector<uint8_t> be;
  do {
    be.insert(be.begin(), static_cast<uint8_t>(v & 0xFF));
    v >>= 8;
  } while (v != 0);
  if (be[0] & 0x80) {
    be.insert(be.begin(), 0x00);
  }
  return Tlv(tag, be);
}

std::vector<uint8_t> Octets(absl::Span<const uint8_t> b) { return Tlv(0x04, b); }
std::vector<uint8_t> Boolean(bool b) {
  return Tlv(0x01, std::vector<uint8_t>{b ? uint8_t{0xFF} : uint8_t{0x00}});
}

std::string SubOid(absl::string_view suffix) { return absl::StrCat(kSgxExtensionOid, ".", suffix); }

// --- Key and certificate derivation. ---

absl::StatusOr<crypto::EvpPkeyPtr> DeriveKey(absl::string_view label) {
  const crypto::Sha256Digest scalar = crypto::Sha256(label);
  auto key = crypto::PrivateKeyFromScalar(crypto::Curve::kP256, scalar);
  if (!key.ok()) {
    return absl::InternalError(
        absl::StrCat("simulated key from label \"", label, "\": ", key.status().message()));
  }
  return std::move(key).value();
}

std::vector<uint8_t> SerialFor(absl::string_view label) {
  const crypto::Sha256Digest h = crypto::Sha256(absl::StrCat("serial:", label));
  std::vector<uint8_t> serial(h.begin(), h.begin() + 20);
  serial[0] = static_cast<uint8_t>((serial[0] & 0x7F) | 0x40);  // positive, 20 significant bytes
  return serial;
}

template <size_t N>
std::array<uint8_t, N> LabelBytes(absl::string_view label) {
  const crypto::Sha256Digest h = crypto::Sha256(label);
  std::array<uint8_t, N> out{};
  static_assert(N <= 32);
  std::copy(h.begin(), h.begin() + N, out.begin());
  return out;
}

std::string UpperHex(absl::Span<const uint8_t> b) {
  return absl::AsciiStrToUpper(core::HexEncode(b));
}

std::string JsonTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Intel's component categories, as the real TDX TCB info lists them (vector tdx-v4-phala-b0c06f).
OrderedJson SgxComponents(const std::array<uint8_t, 16>& svns) {
  OrderedJson out = OrderedJson::array();
  for (size_t i = 0; i < svns.size(); ++i) {
    OrderedJson c;
    c["svn"] = svns[i];
    switch (i) {
      case 0:
        c["category"] = "BIOS";
        c["type"] = "Early Microcode Update";
        break;
      case 1:
        c["category"] = "OS/VMM";
        c["type"] = "SGX Late Microcode Update";
        break;
      case 2:
        c["category"] = "OS/VMM";
        c["type"] = "TXT SINIT";
        break;
      case 3:
      case 4:
      case 5:
        c["category"] = "BIOS";
        break;
      case 7:
        c["category"] = "OS/VMM";
        c["type"] = "SEAMLDR ACM";
        break;
      default:
        break;
    }
    out.push_back(std::move(c));
  }
  return out;
}

OrderedJson TdxComponents(const std::array<uint8_t, 16>& svns) {
  OrderedJson out = OrderedJson::array();
  for (size_t i = 0; i < svns.size(); ++i) {
    OrderedJson c;
    c["svn"] = svns[i];
    if (i == 0 || i == 1) {
      c["category"] = "OS/VMM";
      c["type"] = "TDX Module";
    } else if (i == 2) {
      c["category"] = "OS/VMM";
      c["type"] = "TDX Late Microcode Update";
    }
    out.push_back(std::move(c));
  }
  return out;
}

OrderedJson IsvSvnLevel(int isvsvn, absl::string_view date, absl::string_view status) {
  OrderedJson level;
  level["tcb"]["isvsvn"] = isvsvn;
  level["tcbDate"] = date;
  level["tcbStatus"] = status;
  return level;
}

OrderedJson ModuleIdentity(absl::string_view id, OrderedJson levels) {
  OrderedJson m;
  m["id"] = id;
  m["mrsigner"] = std::string(96, '0');
  m["attributes"] = "0000000000000000";
  m["attributesMask"] = "FFFFFFFFFFFFFFFF";
  m["tcbLevels"] = std::move(levels);
  return m;
}

constexpr absl::string_view kUpToDateTcbDate = "2024-03-13T00:00:00Z";
constexpr absl::string_view kOutOfDateTcbDate = "2023-08-09T00:00:00Z";

// TDX TCB info v3 body (compact, Intel's key order). Levels newest first.
std::string TcbInfoBody(absl::Time issue, absl::Time next_update) {
  OrderedJson t;
  t["id"] = "TDX";
  t["version"] = 3;
  t["issueDate"] = JsonTime(issue);
  t["nextUpdate"] = JsonTime(next_update);
  t["fmspc"] = std::string{kSimulatedFmspcHex};
  t["pceId"] = UpperHex(kSimulatedPceId);
  t["tcbType"] = 0;
  t["tcbEvaluationDataNumber"] = kSimulatedTcbEvaluationDataNumber;
  t["tdxModule"]["mrsigner"] = std::string(96, '0');
  t["tdxModule"]["attributes"] = "0000000000000000";
  t["tdxModule"]["attributesMask"] = "FFFFFFFFFFFFFFFF";

  // Module identities: TEE_TCB_SVN[1] selects TDX_%02X, TEE_TCB_SVN[0] is rated against isvsvn.
  const int module_svn = kSimulatedTeeTcbSvn[0];
  OrderedJson ids = OrderedJson::array();
  ids.push_back(
      ModuleIdentity("TDX_03", OrderedJson::array({IsvSvnLevel(3, kUpToDateTcbDate, "UpToDate")})));
  ids.push_back(ModuleIdentity(
      "TDX_01", OrderedJson::array({IsvSvnLevel(module_svn, kUpToDateTcbDate, "UpToDate"),
                                    IsvSvnLevel(module_svn - 2, kOutOfDateTcbDate, "OutOfDate")})));
  t["tdxModuleIdentities"] = std::move(ids);

  OrderedJson levels = OrderedJson::array();
  {
    // UpToDate: exactly the simulated platform.
    std::array<uint8_t, 16> tdx{};
    tdx[0] = kSimulatedTeeTcbSvn[0];
    tdx[2] = kSimulatedTeeTcbSvn[2];
    OrderedJson level;
    level["tcb"]["sgxtcbcomponents"] = SgxComponents(kSimulatedSgxTcbComponents);
    level["tcb"]["pcesvn"] = kSimulatedPceSvn;
    level["tcb"]["tdxtcbcomponents"] = TdxComponents(tdx);
    level["tcbDate"] = kUpToDateTcbDate;
    level["tcbStatus"] = "UpToDate";
    levels.push_back(std::move(level));
  }
  {
    // OutOfDate: an older PCE and late microcode (a TD with TEE_TCB_SVN[2] below the current
    // one lands here).
    std::array<uint8_t, 16> tdx{};
    tdx[0] = static_cast<uint8_t>(kSimulatedTeeTcbSvn[0] - 2);
    tdx[2] = static_cast<uint8_t>(kSimulatedTeeTcbSvn[2] - 1);
    OrderedJson level;
    level["tcb"]["sgxtcbcomponents"] = SgxComponents(kSimulatedSgxTcbComponents);
    level["tcb"]["pcesvn"] = kSimulatedPceSvn - 6;
    level["tcb"]["tdxtcbcomponents"] = TdxComponents(tdx);
    level["tcbDate"] = kOutOfDateTcbDate;
    level["tcbStatus"] = "OutOfDate";
    level["advisoryIDs"] = OrderedJson::array({"PML-SIMULATED-SA-00001"});
    levels.push_back(std::move(level));
  }
  t["tcbLevels"] = std::move(levels);
  return t.dump();
}

// TD_QE identity v2 body.
std::string QeIdentityBody(absl::Time issue, absl::Time next_update,
                           const std::array<uint8_t, 32>& mrsigner) {
  OrderedJson q;
  q["id"] = "TD_QE";
  q["version"] = 2;
  q["issueDate"] = JsonTime(issue);
  q["nextUpdate"] = JsonTime(next_update);
  q["tcbEvaluationDataNumber"] = kSimulatedTcbEvaluationDataNumber;
  q["miscselect"] = "00000000";
  q["miscselectMask"] = "FFFFFFFF";
  // Intel's TD_QE values: INIT|MODE64 expected, DEBUG (0x02) inside the mask.
  q["attributes"] = "11000000000000000000000000000000";
  q["attributesMask"] = "FBFFFFFFFFFFFFFF0000000000000000";
  q["mrsigner"] = UpperHex(mrsigner);
  q["isvprodid"] = kSimulatedQeIsvProdId;
  q["tcbLevels"] =
      OrderedJson::array({IsvSvnLevel(kSimulatedQeIsvSvn, kUpToDateTcbDate, "UpToDate"),
                          IsvSvnLevel(kSimulatedQeIsvSvn - 2, kOutOfDateTcbDate, "OutOfDate")});
  return q.dump();
}

absl::Status WriteIn(absl::string_view dir, absl::string_view name, absl::string_view data) {
  return core::WriteFileAtomic(absl::StrCat(dir, "/", name), data);
}

}  // namespace

std::vector<uint8_t> EncodeSgxExtension(absl::Span<const uint8_t> ppid,
                                        absl::Span<const uint8_t> sgx_tcb_components,
                                        uint16_t pce_svn, absl::Span<const uint8_t> pce_id,
                                        absl::Span<const uint8_t> fmspc,
                                        absl::Span<const uint8_t> platform_instance_id) {
  std::vector<std::vector<uint8_t>> tcb;
  for (size_t i = 0; i < sgx_tcb_components.size(); ++i) {
    tcb.push_back(
        Seq({Oid(SubOid(absl::StrCat("2.", i + 1))), UnsignedInt(sgx_tcb_components[i])}));
  }
  tcb.push_back(Seq({Oid(SubOid("2.17")), UnsignedInt(pce_svn)}));
  // CPUSVN: for tcbType 0 it is the component SVNs as bytes.
  tcb.push_back(Seq({Oid(SubOid("2.18")), Octets(sgx_tcb_components)}));
  return Seq({
      Seq({Oid(SubOid("1")), Octets(ppid)}),
      Seq({Oid(SubOid("2")), SeqOf(tcb)}),
      Seq({Oid(SubOid("3")), Octets(pce_id)}),
      Seq({Oid(SubOid("4")), Octets(fmspc)}),
      Seq({Oid(SubOid("5")), UnsignedInt(1, 0x0A)}),  // SGX type: Scalable
      Seq({Oid(SubOid("6")), Octets(platform_instance_id)}),
      Seq({Oid(SubOid("7")),
           Seq({Seq({Oid(SubOid("7.1")), Boolean(true)}), Seq({Oid(SubOid("7.2")), Boolean(true)}),
                Seq({Oid(SubOid("7.3")), Boolean(true)})})}),
  });
}

absl::StatusOr<SimulatedTdxPki> SimulatedTdxPki::Create() {
  SimulatedTdxPki pki;
  PML_ASSIGN_OR_RETURN(pki.root_key_, DeriveKey(kRootKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.platform_ca_key_, DeriveKey(kPlatformCaKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.pck_key_, DeriveKey(kPckKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.tcb_signing_key_, DeriveKey(kTcbSigningKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.attestation_key_, DeriveKey(kAttestationKeyLabel));

  PML_ASSIGN_OR_RETURN(std::string root_pub, crypto::PublicKeyToPem(*pki.root_key_));
  if (root_pub != kSimulatedRootPublicKeyPem) {
    return absl::InternalError(
        "derived simulated root key differs from kSimulatedRootPublicKeyPem");
  }

  auto spec = [](absl::string_view cn, absl::string_view serial_label) {
    crypto::CertSpec s;
    s.common_name = std::string{cn};
    s.organization = std::string{kOrganization};
    s.not_before = CertNotBefore();
    s.not_after = CertNotAfter();
    s.serial = SerialFor(serial_label);
    return s;
  };

  crypto::CertSpec root = spec(kRootCommonName, kRootKeyLabel);
  root.is_ca = true;
  root.path_len = 1;
  PML_ASSIGN_OR_RETURN(pki.root_cert_,
                       crypto::IssueCertificate(root, *pki.root_key_, *pki.root_key_, nullptr));

  crypto::CertSpec platform = spec(kPlatformCaCommonName, kPlatformCaKeyLabel);
  platform.is_ca = true;
  platform.path_len = 0;
  PML_ASSIGN_OR_RETURN(pki.platform_ca_cert_,
                       crypto::IssueCertificate(platform, *pki.platform_ca_key_, *pki.root_key_,
                                                pki.root_cert_.get()));

  crypto::CertSpec pck = spec(kPckCommonName, kPckKeyLabel);
  pck.extensions.push_back(crypto::CustomExtension{
      std::string{kSgxExtensionOid}, false,
      EncodeSgxExtension(LabelBytes<16>("pml simulated tdx ppid v1"), kSimulatedSgxTcbComponents,
                         kSimulatedPceSvn, kSimulatedPceId, kSimulatedFmspc,
                         LabelBytes<16>("pml simulated tdx platform instance id v1"))});
  PML_ASSIGN_OR_RETURN(pki.pck_cert_,
                       crypto::IssueCertificate(pck, *pki.pck_key_, *pki.platform_ca_key_,
                                                pki.platform_ca_cert_.get()));

  crypto::CertSpec tcb = spec(kTcbSigningCommonName, kTcbSigningKeyLabel);
  PML_ASSIGN_OR_RETURN(
      pki.tcb_signing_cert_,
      crypto::IssueCertificate(tcb, *pki.tcb_signing_key_, *pki.root_key_, pki.root_cert_.get()));

  PML_ASSIGN_OR_RETURN(pki.root_pem_, crypto::CertificateToPem(*pki.root_cert_));
  PML_ASSIGN_OR_RETURN(pki.platform_ca_pem_, crypto::CertificateToPem(*pki.platform_ca_cert_));
  PML_ASSIGN_OR_RETURN(pki.pck_pem_, crypto::CertificateToPem(*pki.pck_cert_));
  PML_ASSIGN_OR_RETURN(pki.tcb_signing_pem_, crypto::CertificateToPem(*pki.tcb_signing_cert_));

  pki.qe_mrsigner_ = LabelBytes<32>("pml simulated td qe mrsigner v1");
  pki.qe_mrenclave_ = LabelBytes<32>("pml simulated td qe mrenclave v1");
  return pki;
}

std::string SimulatedTdxPki::PckChainPem() const {
  return absl::StrCat(pck_pem_, platform_ca_pem_, root_pem_);
}

absl::StatusOr<SimulatedTdxCollateral> SimulatedTdxPki::MakeCollateral(absl::Time now) const {
  // Whole seconds: the JSON dates and CRL times carry no fraction.
  const absl::Time t = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  const absl::Time issued = t - absl::Hours(1);
  const absl::Time next_update = t + absl::Hours(24 * 30);

  SimulatedTdxCollateral c;
  c.tcb_info = TcbInfoBody(issued, next_update);
  PML_ASSIGN_OR_RETURN(c.tcb_info_signature,
                       crypto::SignEcdsaRaw(*tcb_signing_key_, crypto::Digest::kSha256,
                                            core::AsBytes(c.tcb_info), 32));
  c.tcb_info_issuer_chain = absl::StrCat(tcb_signing_pem_, root_pem_);

  c.qe_identity = QeIdentityBody(issued, next_update, qe_mrsigner_);
  PML_ASSIGN_OR_RETURN(c.qe_identity_signature,
                       crypto::SignEcdsaRaw(*tcb_signing_key_, crypto::Digest::kSha256,
                                            core::AsBytes(c.qe_identity), 32));
  c.qe_identity_issuer_chain = c.tcb_info_issuer_chain;

  PML_ASSIGN_OR_RETURN(
      crypto::X509CrlPtr pck_crl,
      crypto::IssueCrl(*platform_ca_cert_, *platform_ca_key_, {}, issued, next_update));
  PML_ASSIGN_OR_RETURN(c.pck_crl, crypto::CrlToDer(*pck_crl));
  c.pck_crl_issuer_chain = absl::StrCat(platform_ca_pem_, root_pem_);

  PML_ASSIGN_OR_RETURN(crypto::X509CrlPtr root_crl,
                       crypto::IssueCrl(*root_cert_, *root_key_, {}, issued, next_update));
  PML_ASSIGN_OR_RETURN(c.root_ca_crl, crypto::CrlToDer(*root_crl));
  return c;
}

std::string SimulatedTdxCollateral::ToJson() const {
  OrderedJson j;
  j["pck_crl_issuer_chain"] = pck_crl_issuer_chain;
  j["root_ca_crl"] = core::HexEncode(root_ca_crl);
  j["pck_crl"] = core::HexEncode(pck_crl);
  j["tcb_info_issuer_chain"] = tcb_info_issuer_chain;
  j["tcb_info"] = tcb_info;
  j["tcb_info_signature"] = core::HexEncode(tcb_info_signature);
  j["qe_identity_issuer_chain"] = qe_identity_issuer_chain;
  j["qe_identity"] = qe_identity;
  j["qe_identity_signature"] = core::HexEncode(qe_identity_signature);
  return j.dump(1) + "\n";
}

absl::Status SimulatedTdxCollateral::WritePcsSplit(absl::string_view dir) const {
  PML_RETURN_IF_ERROR(core::MakeDirs(dir));
  PML_RETURN_IF_ERROR(WriteIn(dir, "tcb_info.json",
                              absl::StrCat("{\"tcbInfo\":", tcb_info, ",\"signature\":\"",
                                           core::HexEncode(tcb_info_signature), "\"}")));
  PML_RETURN_IF_ERROR(
      WriteIn(dir, "qe_identity.json",
              absl::StrCat("{\"enclaveIdentity\":", qe_identity, ",\"signature\":\"",
                           core::HexEncode(qe_identity_signature), "\"}")));
  PML_RETURN_IF_ERROR(WriteIn(dir, "tcb_info_issuer_chain.pem", tcb_info_issuer_chain));
  PML_RETURN_IF_ERROR(WriteIn(dir, "qe_identity_issuer_chain.pem", qe_identity_issuer_chain));
  PML_RETURN_IF_ERROR(WriteIn(dir, "pck_crl_issuer_chain.pem", pck_crl_issuer_chain));
  PML_RETURN_IF_ERROR(WriteIn(dir, "pck_crl.der", core::ToString(pck_crl)));
  PML_RETURN_IF_ERROR(WriteIn(dir, "root_ca_crl.der", core::ToString(root_ca_crl)));
  return absl::OkStatus();
}

}  // namespace pml::tee
