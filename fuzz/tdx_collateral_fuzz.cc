// libFuzzer target for the TDX collateral parsers (lib/tdx/collateral.h, tcb_info.h,
// event_log.h) and, through VerifyQuote, the verifier's certificate / CRL / JSON readers.
// Every parser is tried on the raw input; when the input is a collateral.json document, its
// bodies are parsed and, if it also carries a "quote" (hex), the quote is verified against it.
// Seeds: the vectors' collateral/*.json files, and collateral.json documents with a "quote"
// member added (see fuzz/README or the lead's notes).
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/hex.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/tcb_info.h"
#include "lib/tdx/verify.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  (void)pml::tdx::ParseTcbInfo(text);
  (void)pml::tdx::ParseQeIdentity(text);
  (void)pml::tdx::ParsePcsSignedJson(text, "tcbInfo");
  (void)pml::tdx::ParsePcsSignedJson(text, "enclaveIdentity");
  (void)pml::tdx::DecodeCrlBytes(absl::MakeConstSpan(data, size));
  (void)pml::tdx::ParseEventLog(text);

  auto collateral = pml::tdx::ParseCollateralJson(text);
  if (!collateral.ok()) return 0;
  auto tcb = pml::tdx::ParseTcbInfo(collateral->tcb_info_body);
  (void)pml::tdx::ParseQeIdentity(collateral->qe_identity_body);
  (void)pml::tdx::CollateralNextUpdate(*collateral);
  (void)pml::tdx::CollateralToJson(*collateral);

  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("quote") || !j["quote"].is_string()) return 0;
  auto quote_bytes = pml::core::HexDecode(j["quote"].get<std::string>());
  if (!quote_bytes.ok()) return 0;
  auto quote = pml::tdx::ParseQuote(*quote_bytes);
  if (!quote.ok()) return 0;
  // Verify inside the TCB info's window when it has one, so the whole path runs.
  const absl::Time now =
      tcb.ok() ? tcb->issue_date + absl::Hours(1) : absl::FromUnixSeconds(1751328000);
  (void)pml::tdx::VerifyQuote(*quote, *collateral, pml::tdx::TrustAnchors::IntelDefault(), now,
                              {.allow_expired_collateral = true});
  return 0;
}
