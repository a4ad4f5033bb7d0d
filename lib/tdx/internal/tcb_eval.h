#pragma once
// Internal to lib/tdx: TCB level selection and status convergence with Intel QVL semantics
// (shared/specs/tdx-quote-verification.md §6; QVL TcbLevelCheck.cpp, TdxModuleCheck.cpp,
// TDRelaunchCheck.cpp). Pure functions over already-verified inputs; split out of verify.cc so
// that the convergence tables are unit-tested beyond what the vectors reach.

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "lib/tdx/pck_cert.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/tcb_info.h"

namespace pml::tdx::internal {

// QVL's convergence of a TCB level status with a module or QE level status (§6.2, §6.3):
// OutOfDate turns UpToDate/SWHardeningNeeded into OutOfDate and ConfigurationNeeded(+SWH) into
// OutOfDateConfigurationNeeded; Revoked wins; anything else keeps `level`.
TcbStatus Converge(TcbStatus level, TcbStatus other);

// The "TDX_%02X" module identity, matched case-insensitively, or null.
const TdxModuleIdentity* FindModuleIdentity(const TcbInfo& info, uint8_t version);

struct TcbEvaluation {
  TcbStatus status = TcbStatus::kUpToDate;  // converged
  const TcbLevel* level = nullptr;          // SGX level for SGX quotes, TDX level for TDX
  std::optional<TcbStatus> module_status;   // set when TEE_TCB_SVN[1] > 0
  const IsvTcbLevel* module_level = nullptr;
};

// Selects the TCB level(s) for `pck` and `quote`, judges the TDX module, applies the TD relaunch
// check (TD report 1.5) and converges with `qe_status`. The returned pointers point into `info`.
// kFailedPrecondition TCB_NOT_SUPPORTED when no level matches, TDX_MODULE_MISMATCH when a needed
// module identity is missing.
absl::StatusOr<TcbEvaluation> EvaluateTcb(const TcbInfo& info, const PckCertInfo& pck,
                                          const Quote& quote, TcbStatus qe_status);

}  // namespace pml::tdx::internal
