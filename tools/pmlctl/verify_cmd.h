#pragma once
// `pmlctl verify quote FILE`: offline DCAP verification of one TDX/SGX quote with lib/tdx (no
// gRPC, no network). Prints a verdict (TCB status, advisories, FMSPC, MRTD/RTMRs, collateral
// window) or, with --json, one JSON object.
//
// Exit codes: 0 verified (whatever the TCB status: OutOfDate is a result for policy to judge),
// 1 rejected (the Intel error class is printed; an unparseable quote is rejected as
// UNSUPPORTED_QUOTE_FORMAT), 2 usage or I/O error (missing/unreadable file, bad --at, unusable
// collateral file).
//
// Thread-safety: the functions are thread-safe (no shared state).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pml::pmlctl {

inline constexpr int kVerifyExitVerified = 0;
inline constexpr int kVerifyExitRejected = 1;
inline constexpr int kVerifyExitUsage = 2;

struct VerifyQuoteOptions {
  std::string quote_path;
  // collateral.json (one object, or an array of them), a PCS-split directory (tcb_info.json,
  // qe_identity.json, *.pem, *.der), or a pml-verifier cache directory.
  std::string collateral_path;
  std::string at;  // RFC 3339 or unix seconds; empty: now
  bool json = false;
  bool trust_simulated_tee = false;
  std::string trust_root;  // PEM public key or root certificate used instead of Intel's key
  std::vector<std::string> extras;  // unrecognized arguments (a usage error)
};

// Registers `verify` on `app`, with `verify quote`, `verify gpu` (verify_gpu_cmd.h) and
// `verify token` (token_cmd.h). Each subcommand's callback runs its check and ends parsing with
// CLI::RuntimeError(exit code), which CLI11_PARSE turns into main's return value; the
// subcommands accept extra arguments themselves, so every usage error exits with
// kVerifyExitUsage.
void AddVerifyCommands(CLI::App& app);

// Runs the command, writing the verdict to `out` and errors to `err`. Returns the exit code.
int RunVerifyQuote(const VerifyQuoteOptions& options, std::ostream& out, std::ostream& err);

// "2025-07-01T00:00:00Z" (RFC 3339, any offset) or "1751328000". kInvalidArgument otherwise.
absl::StatusOr<absl::Time> ParseVerifyTime(absl::string_view text);

// The quote in `path`, raw binary or hex text (whitespace and a 0x prefix allowed). File errors
// keep their code (kNotFound, ...); kInvalidArgument for an empty file.
absl::StatusOr<std::vector<uint8_t>> ReadQuoteFile(absl::string_view path);

}  // namespace pml::pmlctl
