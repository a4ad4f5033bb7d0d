#pragma once
// `pmlctl verify endpoint https://HOST:PORT`: what a user runs to learn what answered them. It
// connects over TLS without trusting the server's certificate chain (the attestation is the
// trust), reads dstack's RA-TLS extensions from the leaf certificate (lib/ratls/cert.h: quote,
// event log, app id), checks locally that the quote's report data commits to the certificate's
// key (SHA-512("ratls-cert:" ‖ SPKI)), then asks pml-verifier to appraise the evidence under a
// policy with the same binding, and prints the verdict. A certificate without RA-TLS evidence, a
// quote that does not bind the TLS key, or a refusing policy exit non-zero.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/crypto/ossl.h"
#include "pml/attestation/v1/attestation.pb.h"

namespace pml::pmlctl {

struct EndpointUrl {
  std::string host;  // name or IP literal (IPv6 without brackets)
  uint16_t port = 443;
};
// "https://host[:port][/path]" (path ignored). kInvalidArgument otherwise.
absl::StatusOr<EndpointUrl> ParseEndpointUrl(absl::string_view url);

// TLS 1.2+ handshake with `url` (SNI = host unless it is an IP literal), no chain verification;
// returns the peer's chain, leaf first. kUnavailable when it cannot connect or the handshake
// fails (message names the address).
absl::StatusOr<std::vector<crypto::X509Ptr>> FetchPeerChain(const EndpointUrl& url,
                                                           int timeout_seconds);

// From the leaf: RA-TLS claims and the local binding check, as an Appraise request bound to the
// certificate's SPKI under `policy_id`. kFailedPrecondition naming what is missing (no RA-TLS
// extension, no quote, report data not committing to the key); kInvalidArgument for a malformed
// extension.
absl::StatusOr<attestation::v1::AppraiseRequest> BuildEndpointAppraisal(
    const X509& leaf, absl::string_view policy_id);

// Adds `endpoint` under the existing `verify` command.
void AddVerifyEndpointCommand(CLI::App& verify);

}  // namespace pml::pmlctl
