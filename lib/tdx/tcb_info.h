#pragma once
// Parsed models of Intel's signed JSON collateral bodies: TCB Info (v2/v3, SGX and TDX) and
// Enclave (QE) Identity v2, plus the TCB status vocabulary. Parsing here is of the *body* (the
// value of "tcbInfo" / "enclaveIdentity"); the signature over those exact bytes is checked by
// the verifier (verify.h), never here. Field meanings: shared/specs/tdx-quote-verification.md §4.
//
// Errors are kInvalidArgument with the QVL class (SGX_TCB_INFO_UNSUPPORTED_FORMAT,
// SGX_ENCLAVE_IDENTITY_UNSUPPORTED_FORMAT, TCB_UNRECOGNIZED_STATUS) and the field name.
// Thread-safety: pure functions; the models are plain values.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pml::tdx {

// TCB statuses (§4.1, §6.4). The first seven appear in TCB info levels; module and QE identity
// levels use only UpToDate / OutOfDate / Revoked; the TD relaunch statuses are only results.
enum class TcbStatus {
  kUpToDate,
  kSWHardeningNeeded,
  kConfigurationNeeded,
  kConfigurationAndSWHardeningNeeded,
  kOutOfDate,
  kOutOfDateConfigurationNeeded,
  kRevoked,
  kTDRelaunchAdvised,
  kTDRelaunchAdvisedConfigurationNeeded,
};

// Intel's spelling ("UpToDate", "SWHardeningNeeded", ..., "TDRelaunchAdvised").
absl::string_view TcbStatusName(TcbStatus status);
// Parses Intel's spelling of the seven collateral statuses. kInvalidArgument
// ("TCB_UNRECOGNIZED_STATUS: ...") for anything else.
absl::StatusOr<TcbStatus> ParseTcbStatus(absl::string_view text);

// One TCB level of TCB info. `tdx_components` is set only for TDX TCB info v3.
struct TcbLevel {
  std::array<uint8_t, 16> sgx_components{};
  uint16_t pce_svn = 0;
  std::optional<std::array<uint8_t, 16>> tdx_components;
  absl::Time tcb_date;
  std::string tcb_date_text;  // as written, e.g. "2024-03-13T00:00:00Z"
  TcbStatus status = TcbStatus::kUpToDate;
  std::vector<std::string> advisory_ids;
};

// A TCB level of a TDX module identity or of a QE identity (tcb = {isvsvn}).
struct IsvTcbLevel {
  uint16_t isv_svn = 0;
  absl::Time tcb_date;
  std::string tcb_date_text;
  TcbStatus status = TcbStatus::kUpToDate;
  std::vector<std::string> advisory_ids;
};

// tdxModule (§4.1): the expected MRSIGNERSEAM and SEAMATTRIBUTES (bytes as in the quote).
struct TdxModule {
  std::array<uint8_t, 48> mr_signer{};
  std::array<uint8_t, 8> attributes{};
  std::array<uint8_t, 8> attributes_mask{};
};

// tdxModuleIdentities[] entry ("TDX_01", "TDX_03", ...).
struct TdxModuleIdentity {
  std::string id;
  TdxModule module;
  std::vector<IsvTcbLevel> tcb_levels;
};

struct TcbInfo {
  std::string id;  // "SGX" or "TDX" ("SGX" implied for version 2)
  int version = 0;
  absl::Time issue_date;
  absl::Time next_update;
  std::array<uint8_t, 6> fmspc{};
  std::array<uint8_t, 2> pce_id{};
  int tcb_type = 0;
  int64_t tcb_evaluation_data_number = 0;
  std::optional<TdxModule> tdx_module;
  std::vector<TdxModuleIdentity> tdx_module_identities;
  std::vector<TcbLevel> tcb_levels;  // in file order (newest first, as PCS emits them)

  bool is_tdx() const { return id == "TDX"; }
};

struct QeIdentity {
  std::string id;  // "QE", "TD_QE", "QVE"
  int version = 0;
  absl::Time issue_date;
  absl::Time next_update;
  int64_t tcb_evaluation_data_number = 0;
  uint32_t misc_select = 0;       // the hex is the big-endian u32 (QVL vectorToUint32)
  uint32_t misc_select_mask = 0;
  std::array<uint8_t, 16> attributes{};
  std::array<uint8_t, 16> attributes_mask{};
  std::array<uint8_t, 32> mr_signer{};
  uint16_t isv_prod_id = 0;
  std::vector<IsvTcbLevel> tcb_levels;
};

// Parses a TCB info body (TDX v3, SGX v2/v3). Requires the fields §4.1 lists; unknown fields
// are ignored. kInvalidArgument naming the field on a missing/mistyped/out-of-range value.
absl::StatusOr<TcbInfo> ParseTcbInfo(absl::string_view body_json);

// Parses an enclave identity body (version 2). Same error contract.
absl::StatusOr<QeIdentity> ParseQeIdentity(absl::string_view body_json);

// Parses Intel's UTC timestamps ("2025-06-19T10:16:03Z"; fractional seconds and "+00:00"
// accepted). kInvalidArgument otherwise.
absl::StatusOr<absl::Time> ParseIntelTime(absl::string_view text);

}  // namespace pml::tdx
