#pragma once
// `pmlctl verify gpu`: verification of NVIDIA GPU / NVSwitch evidence files with lib/gpu, offline
// by default (no gRPC; the network only with --online). Reads the vectors' formats: NVAT
// serialized evidence / PPCIe JSON arrays and NRAS request bodies (--evidence,
// --switch-evidence), or one report (binary or hex text) with its PEM chain (--report,
// --cert-chain). RIMs come from files (--rim, --rim-dir) and OCSP responses from DER files
// (--ocsp); with --online, from NVIDIA's RIM service and OCSP responder as well.
//
// Prints one line per device and the overall verdict under NVIDIA's default policy, or with
// --json the NVAT-shaped claims. Exit codes: 0 every device passed, 1 not passed (a device was
// refused, or the verdict failed: the reasons are printed), 2 usage or I/O error.
//
// Thread-safety: the function is thread-safe (no shared state).

#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace pml::pmlctl {

struct VerifyGpuOptions {
  std::vector<std::string> evidence_paths;         // JSON arrays of GPU evidence
  std::vector<std::string> switch_evidence_paths;  // JSON arrays of NVSwitch evidence
  std::string report_path;                         // one report, binary or hex
  std::string cert_chain_path;                     // its PEM chain
  std::string arch;                                // for --report: HOPPER, BLACKWELL, LS10
  std::string nonce;                               // 64 hex digits, or @FILE
  std::vector<std::string> rims;                   // FILE or ID=FILE
  std::string rim_dir;
  std::vector<std::string> ocsp_paths;  // DER OCSP responses
  std::string at;                       // RFC 3339 or unix seconds; empty: now
  bool online = false;
  bool allow_missing_ocsp = false;  // the verdict does not require OCSP
  bool trust_simulated_tee = false;
  bool json = false;
  std::vector<std::string> extras;
};

// Registers `gpu` under the `verify` subcommand.
void AddVerifyGpuCommand(CLI::App& verify);

// Runs the command; returns the exit code.
int RunVerifyGpu(const VerifyGpuOptions& options, std::ostream& out, std::ostream& err);

}  // namespace pml::pmlctl
