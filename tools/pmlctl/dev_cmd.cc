#include "tools/pmlctl/dev_cmd.h"

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/tee/simulated_pki.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

int Error(std::ostream& err, int code, const absl::Status& status) {
  err << "pmlctl dev simulated-collateral: error: " << status.ToString() << "\n";
  return code;
}

}  // namespace

int RunSimulatedCollateral(const SimulatedCollateralOptions& o, std::ostream& out,
                           std::ostream& err) {
  absl::Time at = absl::Now();
  if (!o.at.empty()) {
    auto t = ParseVerifyTime(o.at);
    if (!t.ok()) {
      return Error(err, kDevExitUsage, t.status());
    }
    at = *t;
  }
  auto pki = tee::SimulatedTdxPki::Create();
  if (!pki.ok()) {
    return Error(err, kDevExitFailed, pki.status());
  }
  auto collateral = pki->MakeCollateral(at);
  if (!collateral.ok()) {
    return Error(err, kDevExitFailed, collateral.status());
  }
  const std::string json = collateral->ToJson();
  const bool to_stdout = o.out == "-";
  if (to_stdout) {
    out << json;
  } else if (absl::Status s = core::WriteFileAtomic(o.out, json, 0644); !s.ok()) {
    return Error(err, kDevExitUsage, s);
  }
  // Validity as MakeCollateral states it (simulated_pki.h).
  std::ostream& notice = to_stdout ? err : out;
  notice << "SIMULATED collateral for development (lib/tee's simulated TDX platform, FMSPC "
         << tee::kSimulatedFmspcHex << "; it proves nothing about any platform)";
  if (!to_stdout) {
    notice << " written to " << o.out;
  }
  notice << "\n  valid " << Rfc3339(at - absl::Hours(1)) << " to "
         << Rfc3339(at + absl::Hours(24 * 30)) << "\n"
         << "  trusted only with `pmlctl verify quote --trust-simulated-tee` or a pml-verifier\n"
         << "  that trusts the simulated TEE root (import: RefreshCollateral "
            "import_collateral_json)\n";
  return kDevExitOk;
}

void AddDevCommands(CLI::App& app) {
  auto* dev = app.add_subcommand(
      "dev", "development helpers producing SIMULATED material (never for production)");
  dev->require_subcommand(1);

  auto o = std::make_shared<SimulatedCollateralOptions>();
  auto* cmd = dev->add_subcommand(
      "simulated-collateral",
      "write collateral.json for quotes of lib/tee's SIMULATED TDX platform (TCB info, QE\n"
      "identity, CRLs and issuer chains under the simulated PKI), for importing into\n"
      "pml-verifier (RefreshCollateral import_collateral_json) or `pmlctl verify quote\n"
      "--collateral FILE --trust-simulated-tee`");
  cmd->add_option("--out", o->out,
                  "file to write (atomically, mode 0644), or - for standard output")
      ->required();
  cmd->add_option("--at", o->at,
                  "issue time, RFC 3339 (2025-07-01T00:00:00Z) or unix seconds (default: now); "
                  "valid from 1 hour before to 30 days after");
  cmd->footer(
      "Exit codes: 0 written; 1 the simulated PKI could not be built; 2 usage or I/O error\n"
      "(bad --at, unwritable --out). Errors the argument parser finds (a missing --out) exit\n"
      "with CLI11's codes, 100 and up.");
  cmd->callback([o] {
    const int code = RunSimulatedCollateral(*o, std::cout, std::cerr);
    std::cout.flush();
    throw CLI::RuntimeError(code);
  });
}

}  // namespace pml::pmlctl
