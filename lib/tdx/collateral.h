#pragma once
// Intel DCAP collateral for one platform family (FMSPC) as the verifier consumes it: the TCB info
// and QE identity with their *exact signed bytes*, raw signatures and issuer chains, the PCK CRL
// and the Root CA CRL (shared/specs/tdx-quote-verification.md §4, §9). The field set is that of
// QvE's sgx_ql_qve_collateral_t / Phala's QuoteCollateralV3.
//
// Parsers read the shared vectors' two shapes:
//   - collateral.json (QuoteCollateralV3): bodies as JSON strings, signatures hex r||s, CRLs hex
//     DER, chains PEM;
//   - a PCS-split directory: tcb_info.json = {"tcbInfo":<body>,"signature":"<hex>"} exactly as
//     PCS serves it (the body is cut out byte-exact by a scanner, never re-serialized), the same
//     for qe_identity.json ({"enclaveIdentity":...}), *_issuer_chain.pem, pck_crl.der,
//     root_ca_crl.der and optionally pck_certificate_chain.pem.
// Nothing here checks a signature; VerifyQuote does (verify.h).
//
// Errors: kInvalidArgument "<CLASS>: <field>: <what>" (MISSING_PARAMETERS,
// SGX_TCB_INFO_UNSUPPORTED_FORMAT, SGX_ENCLAVE_IDENTITY_UNSUPPORTED_FORMAT,
// SGX_CRL_UNSUPPORTED_FORMAT, UNSUPPORTED_CERT_FORMAT); file errors keep their code (kNotFound...).
// Thread-safety: pure functions; Collateral is a plain value.

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::tdx {

struct Collateral {
  std::string tcb_info_body;                // exact signed bytes of the "tcbInfo" value
  std::vector<uint8_t> tcb_info_signature;  // raw r||s (64 bytes)
  std::string tcb_info_issuer_chain;        // PEM: TCB Signing cert, Root CA
  std::string qe_identity_body;             // exact signed bytes of the "enclaveIdentity" value
  std::vector<uint8_t> qe_identity_signature;
  std::string qe_identity_issuer_chain;     // PEM
  std::vector<uint8_t> pck_crl;             // DER
  std::string pck_crl_issuer_chain;         // PEM: PCK Platform/Processor CA, Root CA
  std::vector<uint8_t> root_ca_crl;         // DER
  // Optional: the PCK chain (leaf first, PEM) for quotes that do not carry one (cert data type
  // 1-4, or type 5 without PEM).
  std::string pck_certificate_chain;

  friend bool operator==(const Collateral&, const Collateral&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Collateral& c) {
    return H::combine(std::move(h), c.tcb_info_body, c.tcb_info_signature,
                      c.tcb_info_issuer_chain, c.qe_identity_body, c.qe_identity_signature,
                      c.qe_identity_issuer_chain, c.pck_crl, c.pck_crl_issuer_chain,
                      c.root_ca_crl, c.pck_certificate_chain);
  }
};

// SHA-256 over all fields, length-prefixed: a stable content id for logs, metrics and caches
// kept outside the process (the verifier itself keys on the exact content).
std::array<uint8_t, 32> CollateralDigest(const Collateral& c);

// Parses the collateral.json shape. All fields but pck_certificate_chain are required.
absl::StatusOr<Collateral> ParseCollateralJson(absl::string_view json);

// Serializes to the collateral.json shape (round-trips through ParseCollateralJson byte-exact).
// kInvalidArgument when a body or chain is not valid UTF-8 (JSON strings cannot carry it).
absl::StatusOr<std::string> CollateralToJson(const Collateral& c);

// A signed PCS JSON document split into the exact body bytes and the signature.
struct SignedJsonBody {
  std::string body;
  std::vector<uint8_t> signature;
};

// Cuts the value of the top-level `body_key` ("tcbInfo" / "enclaveIdentity") out of a PCS
// response byte-exact, and decodes the top-level "signature" (hex). The document must be one
// JSON object whose keys are unique; whitespace around tokens is allowed. kInvalidArgument
// naming the problem otherwise.
absl::StatusOr<SignedJsonBody> ParsePcsSignedJson(absl::string_view document,
                                                  absl::string_view body_key);

// Decodes a CRL given as DER, PEM, or hex text (PCCS's /rootcacrl answers hex). Returns DER.
// kInvalidArgument ("SGX_CRL_UNSUPPORTED_FORMAT: ...") when it is none of those.
absl::StatusOr<std::vector<uint8_t>> DecodeCrlBytes(absl::Span<const uint8_t> data);

// Reads a PCS-split collateral directory (file names above).
absl::StatusOr<Collateral> LoadCollateralDir(absl::string_view dir);

// Reads a collateral.json file.
absl::StatusOr<Collateral> LoadCollateralJsonFile(absl::string_view path);

}  // namespace pml::tdx
