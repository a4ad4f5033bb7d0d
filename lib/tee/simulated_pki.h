#pragma once
// The simulated Intel DCAP PKI behind the TDX simulator: a root CA, a "PCK Platform CA", the PCK
// leaf of the simulated platform (with the SGX extension, OID 1.2.840.113741.1.13.1, encoded as
// Intel encodes it), the TCB signing certificate, and the collateral they sign (TCB info v3,
// TD_QE identity v2, root and PCK CRLs) in the shape of the vectors' collateral.json.
//
// Nothing here is secret, by design: simulated evidence proves nothing. Every key is derived from
// a fixed public label (P-256 scalar = SHA-256(label)), and every certificate has a fixed serial,
// subject and validity, so a guest's simulator and a verifier in another process agree on the
// whole PKI without sharing files. Only ECDSA signatures differ between runs (OpenSSL 3.0 signs
// with random nonces). Every subject says "PML SIMULATED"; verifiers trust the root only when
// told to, by pinning kSimulatedRootPublicKeyPem (also in lib/tee/simulated_root.pem).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"

namespace pml::tee {

// The simulated root's public key (SubjectPublicKeyInfo PEM; also lib/tee/simulated_root.pem).
// Pin this, never the certificate. SimulatedTdxPki::Create checks that the derived key still
// equals it.
inline constexpr absl::string_view kSimulatedRootPublicKeyPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2J8q/7I5e6kTGByjimlJJjeYQ7S+\n"
    "OxpvlxmVUUX4GvJ9eCtv/+Iv/6tHnWHhpXW2eVydmzmYktE2SphLIKY+NQ==\n"
    "-----END PUBLIC KEY-----\n";
// SHA-256 of that key's SubjectPublicKeyInfo DER.
inline constexpr absl::string_view kSimulatedRootSpkiSha256Hex =
    "bf92412230035717e63cb8b7277d77ab175583ab8044f98cc1f970e6798242aa";

// Labels the keys are derived from (scalar = SHA-256(label)).
inline constexpr absl::string_view kRootKeyLabel = "pml simulated tdx root v1";
inline constexpr absl::string_view kPlatformCaKeyLabel = "pml simulated tdx pck platform ca v1";
inline constexpr absl::string_view kPckKeyLabel = "pml simulated tdx pck leaf v1";
inline constexpr absl::string_view kTcbSigningKeyLabel = "pml simulated tdx tcb signing v1";
inline constexpr absl::string_view kAttestationKeyLabel = "pml simulated tdx attestation key v1";

// Subject common names. Verifiers following QVL check "SGX Root CA" (root), "CA" (intermediate)
// and "SGX PCK Certificate" (leaf) in these, and pick the PCK CRL from "Platform".
inline constexpr absl::string_view kRootCommonName = "PML SIMULATED SGX Root CA";
inline constexpr absl::string_view kPlatformCaCommonName = "PML SIMULATED SGX PCK Platform CA";
inline constexpr absl::string_view kPckCommonName = "PML SIMULATED SGX PCK Certificate";
inline constexpr absl::string_view kTcbSigningCommonName = "PML SIMULATED SGX TCB Signing";
inline constexpr absl::string_view kOrganization = "PML SIMULATED TEE - not Intel";

// The simulated platform, as its PCK certificate states it (tdx-quote-verification.md §3).
// The FMSPC starts with 0xFF so it cannot be mistaken for a real Intel platform.
inline constexpr std::array<uint8_t, 6> kSimulatedFmspc = {0xFF, 0x51, 0x4D, 0x00, 0x00, 0x00};
inline constexpr absl::string_view kSimulatedFmspcHex = "FF514D000000";
inline constexpr std::array<uint8_t, 2> kSimulatedPceId = {0x00, 0x00};
// SGX TCB component SVNs .2.1–.2.16; CPUSVN carries the same bytes (tcbType 0).
inline constexpr std::array<uint8_t, 16> kSimulatedSgxTcbComponents = {3, 3, 2, 2, 4, 1, 0, 5,
                                                                       0, 0, 0, 0, 0, 0, 0, 0};
inline constexpr uint16_t kSimulatedPceSvn = 11;
// TEE_TCB_SVN of the simulated TD: module minor SVN 5, major 1 (identity TDX_01), late microcode
// update SVN 2. The simulated TCB info rates this UpToDate.
inline constexpr std::array<uint8_t, 16> kSimulatedTeeTcbSvn = {5, 1, 2, 0, 0, 0, 0, 0,
                                                                0, 0, 0, 0, 0, 0, 0, 0};
// The simulated TD quoting enclave (QE report fields the QE identity matches).
inline constexpr uint16_t kSimulatedQeIsvProdId = 2;  // TD_QE, as Intel's
inline constexpr uint16_t kSimulatedQeIsvSvn = 4;
inline constexpr std::array<uint8_t, 16> kSimulatedQeAttributes = {
    0x15, 0, 0, 0, 0, 0, 0, 0, 0xE7, 0, 0, 0, 0, 0, 0, 0};  // INIT|MODE64|PROVISIONKEY, XFRM e7
// Intel's QE vendor id (quote header offset 12); verifiers require it, so the simulator uses it.
inline constexpr std::array<uint8_t, 16> kIntelQeVendorId = {
    0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07};
// TCB evaluation data number written into the simulated TCB info and QE identity.
inline constexpr int kSimulatedTcbEvaluationDataNumber = 17;

// Collateral for the simulated platform, in the fields of Phala's QuoteCollateralV3 (the vectors'
// collateral.json).
struct SimulatedTdxCollateral {
  std::string tcb_info;                     // exact signed body: {"id":"TDX","version":3,…}
  std::vector<uint8_t> tcb_info_signature;  // raw r‖s (64 bytes) over tcb_info's bytes
  std::string tcb_info_issuer_chain;        // PEM: TCB signing cert, root
  std::string qe_identity;                  // exact signed body: {"id":"TD_QE","version":2,…}
  std::vector<uint8_t> qe_identity_signature;
  std::string qe_identity_issuer_chain;  // PEM: TCB signing cert, root
  std::vector<uint8_t> pck_crl;          // DER, issued by the PCK Platform CA, empty
  std::string pck_crl_issuer_chain;      // PEM: PCK Platform CA, root
  std::vector<uint8_t> root_ca_crl;      // DER, issued by the root, empty

  // collateral.json text: the nine fields in the vectors' order, signatures and CRLs as lower-case
  // hex, indented by one space as the vectors are.
  std::string ToJson() const;

  // The PCS-split form (the vectors' collateral/ folder): tcb_info.json ({"tcbInfo":…,
  // "signature":…} as PCS serves it), qe_identity.json ({"enclaveIdentity":…}), pck_crl.der,
  // root_ca_crl.der and the three *_issuer_chain.pem files, written atomically into `dir` (created
  // if missing). kInternal naming the path on I/O failure.
  absl::Status WritePcsSplit(absl::string_view dir) const;
};

// The simulated PKI. Immutable after Create; safe to share read-only across threads.
class SimulatedTdxPki {
 public:
  // Derives every key and issues every certificate. kInternal if OpenSSL fails or the derived root
  // key differs from kSimulatedRootPublicKeyPem (a broken build, not an input error).
  static absl::StatusOr<SimulatedTdxPki> Create();

  // Collateral valid around `now`: TCB info and QE identity issued now-1h with nextUpdate now+30d,
  // both CRLs with thisUpdate now-1h and nextUpdate now+30d. Certificates are valid
  // 2024-01-01..2049-12-31 whatever `now` is. The TCB info has one UpToDate level matching the
  // simulated platform (kSimulatedSgxTcbComponents, kSimulatedPceSvn, kSimulatedTeeTcbSvn) and a
  // lower OutOfDate one; the QE identity rates kSimulatedQeIsvSvn UpToDate. kInternal if signing
  // fails.
  absl::StatusOr<SimulatedTdxCollateral> MakeCollateral(absl::Time now) const;

  // The PCK chain as the quote's certification data type 5 carries it: leaf, Platform CA, root.
  std::string PckChainPem() const;

  // Borrowed; valid as long as this object.
  const X509& root_cert() const { return *root_cert_; }
  const X509& platform_ca_cert() const { return *platform_ca_cert_; }
  const X509& pck_cert() const { return *pck_cert_; }
  const X509& tcb_signing_cert() const { return *tcb_signing_cert_; }
  const EVP_PKEY& root_key() const { return *root_key_; }
  const EVP_PKEY& platform_ca_key() const { return *platform_ca_key_; }
  const EVP_PKEY& pck_key() const { return *pck_key_; }
  const EVP_PKEY& tcb_signing_key() const { return *tcb_signing_key_; }
  // The QE's attestation key, which signs quotes.
  const EVP_PKEY& attestation_key() const { return *attestation_key_; }

  // PEM of each certificate (as issued; computed once).
  const std::string& root_cert_pem() const { return root_pem_; }
  const std::string& platform_ca_cert_pem() const { return platform_ca_pem_; }
  const std::string& pck_cert_pem() const { return pck_pem_; }
  const std::string& tcb_signing_cert_pem() const { return tcb_signing_pem_; }

  // The simulated TD QE's MRSIGNER and MRENCLAVE (fixed, derived from labels).
  const std::array<uint8_t, 32>& qe_mrsigner() const { return qe_mrsigner_; }
  const std::array<uint8_t, 32>& qe_mrenclave() const { return qe_mrenclave_; }

 private:
  SimulatedTdxPki() = default;

  crypto::EvpPkeyPtr root_key_, platform_ca_key_, pck_key_, tcb_signing_key_, attestation_key_;
  crypto::X509Ptr root_cert_, platform_ca_cert_, pck_cert_, tcb_signing_cert_;
  std::string root_pem_, platform_ca_pem_, pck_pem_, tcb_signing_pem_;
  std::array<uint8_t, 32> qe_mrsigner_{};
  std::array<uint8_t, 32> qe_mrenclave_{};
};

// The DER value of the PCK certificate's SGX extension (the content of its extnValue) for the
// given platform values, encoded as Intel does: PPID, TCB (16 component SVNs, PCESVN, CPUSVN),
// PCE-ID, FMSPC, SGX type (Scalable), platform instance id, configuration. Exposed for tests.
std::vector<uint8_t> EncodeSgxExtension(absl::Span<const uint8_t> ppid,
                                        absl::Span<const uint8_t> sgx_tcb_components,
                                        uint16_t pce_svn, absl::Span<const uint8_t> pce_id,
                                        absl::Span<const uint8_t> fmspc,
                                        absl::Span<const uint8_t> platform_instance_id);

}  // namespace pml::tee
