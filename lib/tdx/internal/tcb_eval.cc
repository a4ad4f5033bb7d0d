#include "lib/tdx/internal/tcb_eval.h"

#include <array>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/core/hex.h"
#include "lib/tdx/errors.h"

namespace pml::tdx::internal {
namespace {

absl::Status Refuse(absl::string_view cls, absl::string_view detail) {
  return MakeError(absl::StatusCode::kFailedPrecondition, cls, detail);
}

std::string Hex(absl::Span<const uint8_t> b) { return core::HexEncode(b).substr(0, 64); }

bool IsConfigurationNeeded(TcbStatus s) {
  return s == TcbStatus::kConfigurationNeeded || s == TcbStatus::kOutOfDateConfigurationNeeded ||
         s == TcbStatus::kConfigurationAndSWHardeningNeeded ||
         s == TcbStatus::kTDRelaunchAdvisedConfigurationNeeded;
}

bool ComponentsAtLeast(const std::array<uint8_t, 16>& have, const std::array<uint8_t, 16>& want,
                       size_t from) {
  for (size_t i = from; i < 16; ++i) {
    if (have[i] < want[i]) return false;
  }
  return true;
}

}  // namespace

TcbStatus Converge(TcbStatus level, TcbStatus other) {
  if (other == TcbStatus::kOutOfDate) {
    if (level == TcbStatus::kUpToDate || level == TcbStatus::kSWHardeningNeeded) {
      return TcbStatus::kOutOfDate;
    }
    if (level == TcbStatus::kConfigurationNeeded ||
        level == TcbStatus::kConfigurationAndSWHardeningNeeded) {
      return TcbStatus::kOutOfDateConfigurationNeeded;
    }
  }
  if (other == TcbStatus::kRevoked) return TcbStatus::kRevoked;
  return level;
}

const TdxModuleIdentity* FindModuleIdentity(const TcbInfo& info, uint8_t version) {
  const std::string want = absl::StrFormat("TDX_%02X", version);
  for (const TdxModuleIdentity& id : info.tdx_module_identities) {
    if (absl::AsciiStrToUpper(id.id) == want) return &id;
  }
  return nullptr;
}

absl::StatusOr<TcbEvaluation> EvaluateTcb(const TcbInfo& info, const PckCertInfo& pck,
                                          const Quote& quote, TcbStatus qe_status) {
  const bool tdx = info.version >= 3 && info.is_tdx() && quote.is_tdx();
  const TdReport* td = tdx ? &*quote.td_report : nullptr;

  // §6.1 (QVL matchTcbLevels).
  const TcbLevel* sgx_level = nullptr;
  const TcbLevel* tdx_level = nullptr;
  for (const TcbLevel& level : info.tcb_levels) {
    if (!ComponentsAtLeast(pck.tcb_components, level.sgx_components, 0) ||
        pck.pce_svn < level.pce_svn) {
      continue;
    }
    if (!tdx) {
      sgx_level = &level;
      break;
    }
    if (sgx_level == nullptr) sgx_level = &level;
    // When TEE_TCB_SVN[1] > 0 the first two bytes are judged through the module identity.
    const size_t from = td->tee_tcb_svn[1] > 0 ? 2 : 0;
    if (level.tdx_components.has_value() &&
        ComponentsAtLeast(td->tee_tcb_svn, *level.tdx_components, from)) {
      tdx_level = &level;
      break;
    }
  }
  if (sgx_level == nullptr) {
    return Refuse(error_class::kTcbNotSupported,
                  "no tcb level matches the pck's sgx tcb components and pcesvn");
  }
  TcbEvaluation ev;
  if (!tdx) {
    ev.level = sgx_level;
    ev.status = Converge(sgx_level->status, qe_status);
    return ev;
  }
  if (tdx_level == nullptr) {
    return Refuse(error_class::kTcbNotSupported,
                  absl::StrCat("no tcb level matches tee_tcb_svn ", Hex(td->tee_tcb_svn)));
  }
  ev.level = tdx_level;

  // §6.2 module status (QVL checkTdxModuleTcbStatus).
  const uint8_t module_version = td->tee_tcb_svn[1];
  if (!(quote.header.version > kQuoteVersion3 && module_version == 0)) {
    const TdxModuleIdentity* id = FindModuleIdentity(info, module_version);
    if (id == nullptr) {
      return Refuse(error_class::kTdxModuleMismatch,
                    absl::StrFormat("tcb info has no module identity TDX_%02X", module_version));
    }
    for (const IsvTcbLevel& l : id->tcb_levels) {
      if (td->tee_tcb_svn[0] >= l.isv_svn) {
        ev.module_level = &l;
        break;
      }
    }
    if (ev.module_level == nullptr) {
      return Refuse(error_class::kTcbNotSupported,
                    absl::StrCat("no ", id->id, " level matches module svn ", td->tee_tcb_svn[0]));
    }
    ev.module_status = ev.module_level->status;
  }
  TcbStatus status = tdx_level->status;
  if (ev.module_status.has_value()) status = Converge(status, *ev.module_status);
  if (status == TcbStatus::kRevoked) {
    ev.status = status;
    return ev;
  }

  // §6.4 TD relaunch (TD report 1.5 only; QVL checkForRelaunch).
  if (quote.body_type == BodyType::kTdReport15 && td->tee_tcb_svn_2.has_value() &&
      qe_status != TcbStatus::kOutOfDate && qe_status != TcbStatus::kRevoked) {
    const TcbStatus sgx_status = sgx_level->status;
    const bool sgx_ok = sgx_status == TcbStatus::kUpToDate ||
                        sgx_status == TcbStatus::kSWHardeningNeeded ||
                        sgx_status == TcbStatus::kConfigurationNeeded ||
                        sgx_status == TcbStatus::kConfigurationAndSWHardeningNeeded;
    const bool tdx_out = status == TcbStatus::kOutOfDate ||
                         status == TcbStatus::kOutOfDateConfigurationNeeded;
    if (sgx_ok && tdx_out && ev.module_status == TcbStatus::kOutOfDate) {
      const TcbLevel& latest = info.tcb_levels.front();
      const Bytes16& svn2 = *td->tee_tcb_svn_2;
      if (!latest.tdx_components.has_value()) {
        return Refuse(error_class::kTcbNotSupported, "latest tcb level has no tdx components");
      }
      const auto& lt = *latest.tdx_components;
      bool relaunch = false;
      if (svn2[1] == 0) {
        relaunch = svn2[0] >= lt[0] && svn2[2] >= lt[2];
      } else {
        const TdxModuleIdentity* id2 = FindModuleIdentity(info, svn2[1]);
        if (id2 == nullptr) {
          return Refuse(error_class::kTdxModuleMismatch,
                        absl::StrFormat("tcb info has no module identity TDX_%02X for "
                                        "tee_tcb_svn_2",
                                        svn2[1]));
        }
        if (id2->tcb_levels.empty()) {
          return Refuse(error_class::kTcbNotSupported, absl::StrCat(id2->id, " has no levels"));
        }
        relaunch = svn2[0] >= id2->tcb_levels.front().isv_svn && svn2[2] >= lt[2];
      }
      if (relaunch) {
        status = IsConfigurationNeeded(sgx_status) || IsConfigurationNeeded(status)
                     ? TcbStatus::kTDRelaunchAdvisedConfigurationNeeded
                     : TcbStatus::kTDRelaunchAdvised;
      }
    }
  }
  ev.status = Converge(status, qe_status);
  return ev;
}

}  // namespace pml::tdx::internal
