#pragma once
// Collateral from Intel PCS API v4 or a PCCS (shared/specs/tdx-quote-verification.md §9), over
// libcurl. Target pml_tdx_pcs, so that lib/tdx itself never links the network.
//
// Requests (base = PcsOptions::base_url, tee = "tdx" or "sgx"):
//   GET {base}/{tee}/certification/v4/tcb?fmspc=<hex>[&update=..]  header TCB-Info-Issuer-Chain
//       (or the v3 name SGX-TCB-Info-Issuer-Chain)
//   GET {base}/{tee}/certification/v4/qe/identity[?update=..]      SGX-Enclave-Identity-Issuer-Chain
//   GET {base}/sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der
//                                                                   SGX-PCK-CRL-Issuer-Chain
//   GET root CA CRL: PcsOptions::root_ca_crl_url (Intel's DER; PCCS's /rootcacrl answers hex)
// Header values are URL-encoded PEM. Bodies are kept byte-exact (the signed TCB info / QE
// identity value is cut out of the response, never re-serialized).
//
// Errors: kUnavailable for transport failures and 5xx/429 (retry is safe), kNotFound for 404,
// kPermissionDenied for 401/403, kInvalidArgument for malformed responses.
// Thread-safety: the source is thread-safe (one curl handle per request).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/tdx/collateral_source.h"

namespace pml::tdx {

inline constexpr absl::string_view kIntelPcsBaseUrl = "https://api.trustedservices.intel.com";
inline constexpr absl::string_view kIntelRootCaCrlUrl =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

struct PcsOptions {
  // Intel PCS, or a PCCS such as "https://localhost:8081" (both serve /sgx|tdx/certification/v4).
  std::string base_url = std::string(kIntelPcsBaseUrl);
  // Where the Root CA CRL comes from. Empty: "{base}/sgx/certification/v4/rootcacrl" (PCCS).
  std::string root_ca_crl_url = std::string(kIntelRootCaCrlUrl);
  // "standard", "early", or empty (PCS default).
  std::string update;
  absl::Duration timeout = absl::Seconds(20);
  // TLS: verify the server (always on in production); optional CA bundle for a private PCCS.
  bool verify_tls = true;
  std::string ca_file;
};

// Builds a PCS/PCCS source. kInvalidArgument when base_url is not http(s).
absl::StatusOr<std::unique_ptr<CollateralSource>> MakePcsSource(PcsOptions options);

// Percent-decodes an HTTP header value ('+' is kept: it is a base64 character in PEM).
// kInvalidArgument on a malformed escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view text);

}  // namespace pml::tdx
