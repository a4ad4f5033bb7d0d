#pragma once
// Composed evidence sources for callers that combine several (pml-verifier, pmlctl):
//   FirstOfRimSource     asks each RimSource in turn; the first RIM found wins. NotFound moves
//                        on; another failure is remembered and returned when no later source
//                        has the RIM.
//   StoredThenOnlineOcsp stored responses first, then (when given) an online responder.
// Neither owns its sources, which must outlive it. Thread-safe when the sources are.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/verify.h"

namespace pml::gpu {

class FirstOfRimSource final : public RimSource {
 public:
  explicit FirstOfRimSource(std::vector<RimSource*> sources) : sources_(std::move(sources)) {}
  absl::StatusOr<std::string> GetRim(absl::string_view rim_id) override {
    absl::Status last = absl::NotFoundError(absl::StrCat("RIM_NOT_FOUND: ", rim_id));
    for (RimSource* s : sources_) {
      auto r = s->GetRim(rim_id);
      if (r.ok())
        return r;
      if (!absl::IsNotFound(r.status()) || absl::IsNotFound(last))
        last = r.status();
    }
    return last;
  }

 private:
  std::vector<RimSource*> sources_;
};

class StoredThenOnlineOcsp final : public OcspSource {
 public:
  StoredThenOnlineOcsp(OcspSource* stored, OcspSource* online) : stored_(stored), online_(online) {}
  absl::StatusOr<std::vector<uint8_t>> GetResponse(const X509& cert, const X509& issuer,
                                                   absl::Span<const uint8_t> nonce) override {
    auto r = stored_->GetResponse(cert, issuer, nonce);
    if (r.ok() || online_ == nullptr)
      return r;
    return online_->GetResponse(cert, issuer, nonce);
  }
  bool SendsNonce() const override { return online_ != nullptr && online_->SendsNonce(); }

 private:
  OcspSource* stored_;
  OcspSource* online_;
};

}  // namespace pml::gpu
