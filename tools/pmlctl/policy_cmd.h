#pragma once
// Operator commands for pml-verifier's appraisal policies and token-signing keys, over the
// pml.attestation.v1.Attestation service (mTLS, client_flags.h; the default role is operator):
//
//   pmlctl policy put ID FILE [--description TEXT] [--expected-version N] [--validate-only]
//       FILE ("-": standard input) is checked locally with attestation::ParsePolicyJson first, so
//       a malformed policy is refused naming its JSON path without a round trip; then PutPolicy.
//       Prints "ID vN sha256 <hex>".
//   pmlctl policy get ID [--version N] [--json]      GetPolicy: pretty canonical JSON (with a
//                                                    header line unless --json)
//   pmlctl policy list [--page-size N]               ListPolicies, every page: a table
//   pmlctl policy rm ID                              DeletePolicy
//   pmlctl token jwks [--out FILE]                   GetJwks: the JWKS, printed or written
//                                                    atomically (0644) for `verify token --jwks`
//   pmlctl token rotate                              RotateSigningKey: the new and previous kid
//
// Exit codes: 0 done; 1 refused: by the local policy check or by the service (its gRPC code and
// message are printed; UNAVAILABLE and DEADLINE_EXCEEDED included); 2 usage or local I/O error
// (an unreadable FILE or PEM file, an unwritable --out, an invalid policy ID). Errors the
// argument parser finds (a missing --addr or ID, a non-numeric --version) exit with CLI11's codes
// (100 and up), as for `pmlctl health`.
//
// The commands read std::cin (policy put -) and write std::cout/std::cerr.

#include <CLI/CLI.hpp>

namespace pml::pmlctl {

// Registers `policy` (put, get, list, rm) on `app`. Each subcommand's callback runs the call and
// ends parsing with CLI::RuntimeError(exit code), like `verify`.
void AddPolicyCommands(CLI::App& app);

// Registers `token` (jwks, rotate) on `app`, the same way. (`verify token`, the offline check, is
// in token_cmd.h.)
void AddTokenCommands(CLI::App& app);

}  // namespace pml::pmlctl
