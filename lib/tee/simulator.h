#pragma once
// The simulated TDX TEE: a TeeProvider that produces real-format TDX quotes (version 4, TD report
// 1.0 body, ECDSA-P256 attestation key, certification data type 6 wrapping the type-5 PCK chain,
// tdx-quote-verification.md §2) under the simulated PKI of lib/tee/simulated_pki.h, for
// development and CI on hosts without TDX (DESIGN.md §4). A verifier runs its full DCAP path on
// these quotes with SimulatedTdxPki::MakeCollateral's collateral, but only if it was told to trust
// the simulated root; such evidence proves nothing about the platform.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/tee/simulated_pki.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee {

// Thread-safe: quotes, extensions and reads may run concurrently (one mutex guards the RTMRs;
// signing happens outside it).
class TdxSimulator final : public TeeProvider {
 public:
  // Builds the simulated PKI and the TD described by `options`. RTMR0-2 start at the given values;
  // RTMR3 at zero, or at `<state_dir>/rtmr3` when that file exists. kInvalidArgument when the state
  // file is malformed (names it); errors of reading it pass through; kInternal if the PKI cannot
  // be built.
  static absl::StatusOr<std::unique_ptr<TdxSimulator>> Create(const SimulatorOptions& options);

  // A TDX v4 quote: header (Intel QE vendor id, TEE type 0x81), TD report with the configured
  // registers, the current RTMRs and `report_data`, signed by the attestation key; QE report
  // signed by the PCK key with REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 0^32; the
  // PCK chain PEM (leaf, Platform CA, root; NUL-terminated as Intel's QE writes it).
  // kInvalidArgument when report_data is not 64 bytes; kInternal if signing fails.
  absl::StatusOr<std::vector<uint8_t>> GetQuote(absl::Span<const uint8_t> report_data) override;

  // RTMR[index] = SHA384(RTMR[index] ‖ digest). RTMR3 is persisted first when a state dir is
  // set; if that write fails, kInternal and the register is unchanged.
  absl::Status ExtendRtmr(int index, absl::Span<const uint8_t> digest) override;

  absl::StatusOr<RtmrValues> GetRtmrs() override;
  TeeKind Kind() const override { return TeeKind::kSimulated; }

  // The PKI behind the quotes; valid as long as this simulator.
  const SimulatedTdxPki& pki() const { return pki_; }

  // The simulated collateral that verifies this simulator's quotes at `now` (see
  // SimulatedTdxPki::MakeCollateral).
  absl::StatusOr<SimulatedTdxCollateral> Collateral(absl::Time now) const {
    return pki_.MakeCollateral(now);
  }

 private:
  TdxSimulator(SimulatorOptions options, SimulatedTdxPki pki, RtmrValues rtmrs);

  absl::Status PersistRtmr3(const Measurement& value) const;

  const SimulatorOptions options_;
  const SimulatedTdxPki pki_;
  mutable absl::Mutex mu_;
  RtmrValues rtmrs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pml::tee
