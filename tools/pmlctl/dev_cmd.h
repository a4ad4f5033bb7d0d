#pragma once
// Development helpers that produce SIMULATED material, never anything a production deployment
// should trust:
//
//   pmlctl dev simulated-collateral --out FILE [--at T]
//       Writes collateral.json (Phala's QuoteCollateralV3 fields, as the vectors' collateral.json)
//       for quotes of lib/tee's simulated TDX platform (tee::SimulatedTdxPki::MakeCollateral): TCB
//       info and QE identity issued at T-1h, next update T+30d (T: --at, default now). Import it
//       into pml-verifier (RefreshCollateral import_collateral_json) or pass it to
//       `pmlctl verify quote QUOTE --collateral FILE --trust-simulated-tee`. A verifier accepts it
//       only when told to trust the simulated root.
//
// Exit codes: 0 written; 1 the simulated PKI could not be built (a broken build); 2 usage or I/O
// error (a bad --at, an unwritable --out).
//
// Thread-safety: RunSimulatedCollateral is thread-safe (no shared state).

#include <ostream>
#include <string>

#include <CLI/CLI.hpp>

namespace pml::pmlctl {

inline constexpr int kDevExitOk = 0;
inline constexpr int kDevExitFailed = 1;
inline constexpr int kDevExitUsage = 2;

struct SimulatedCollateralOptions {
  std::string out;  // the file to write (atomically, 0644), or "-" for standard output
  std::string at;   // RFC 3339 or unix seconds; empty: now
};

// Registers `dev` (simulated-collateral) on `app`. The subcommand's callback ends parsing with
// CLI::RuntimeError(exit code), like `verify`.
void AddDevCommands(CLI::App& app);

// Runs the command: the JSON goes to options.out (or `out` for "-"); the notice that it is
// SIMULATED goes to `out`, or to `err` when the JSON is on `out`; errors to `err`. Returns the
// exit code.
int RunSimulatedCollateral(const SimulatedCollateralOptions& options, std::ostream& out,
                           std::ostream& err);

}  // namespace pml::pmlctl
