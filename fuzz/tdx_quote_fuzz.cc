// libFuzzer target for the TDX/SGX quote parser (lib/tdx/quote.h): ParseQuote must never crash,
// leak or read out of bounds, whatever the bytes. Seed with the vectors' quote.bin files:
//   tdx_quote_fuzz -max_total_time=60 corpus/ ../shared/vectors/tdx/*/quote.bin
#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "lib/tdx/quote.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto quote = pml::tdx::ParseQuote(absl::MakeConstSpan(data, size));
  if (!quote.ok()) return 0;
  // Touch what a verifier reads, so sanitizers see every exposed view.
  volatile size_t sink = quote->signed_region().size() + quote->PckCertChainPem().size() +
                         quote->signature_data.qe_auth_data.size() + quote->trailing_bytes;
  if (quote->td_report.has_value()) sink = sink + quote->td_report->rtmr[3][47];
  if (quote->enclave_report.has_value()) sink = sink + quote->enclave_report->report_data[63];
  (void)sink;
  return 0;
}
