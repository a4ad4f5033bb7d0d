#pragma once
// `pmlctl verify token TOKEN|@FILE --jwks FILE`: offline check of an attestation token (the
// EAR-shaped JWT that pml-verifier's Appraise signs, services/attestation/appraiser.h) against a
// JWK Set saved with `pmlctl token jwks --out FILE`. No gRPC, no network.
//
// The token must be an ES256 compact JWS whose kid is in the JWKS, signed by that key, with iss
// equal to --issuer (default "pml-verifier"; "" checks no issuer) and valid at --at (default now;
// crypto::VerifyJwt's 60 s leeway applies to exp, nbf and iat). Then the verified payload is
// printed: overall status (ear.status), whether it is allowed (pml.allowed), the policy
// (pml.policy id/version/sha256), report data, issue and expiry times, a loud warning when the
// evidence was simulated, and per submodule (cpu0, gpu0, ..., nvswitch0, ...) its status and
// failed checks. With --json the verified payload is printed as JSON instead (the simulated
// warning then goes to `err`).
//
// Exit codes (as `verify quote`): 0 the token verifies and pml.allowed is true; 1 it verifies but
// is not allowed (or carries no pml.allowed), or it is refused: bad signature, unknown kid, alg
// not ES256, expired, not yet valid, wrong issuer (the reason is printed); 2 usage or I/O error:
// missing or unreadable token file or JWKS, a JWKS that does not parse, a bad --at, or a token
// that is not a well-formed JWT (crypto::VerifyJwt's kInvalidArgument).
//
// Thread-safety: RunVerifyToken is thread-safe except with "@-" (it reads std::cin).

#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace pml::pmlctl {

struct VerifyTokenOptions {
  // The compact token, or "@FILE" for a file holding it (surrounding whitespace is ignored), or
  // "@-" for standard input.
  std::string token;
  std::string jwks_path;  // {"keys": [...]} as GetJwks returns it
  std::string issuer = "pml-verifier";
  std::string at;  // RFC 3339 or unix seconds; empty: now
  bool json = false;
  std::vector<std::string> extras;  // unrecognized arguments (a usage error)
};

// Registers `token` under the `verify` subcommand. Like `verify quote`, its callback ends parsing
// with CLI::RuntimeError(exit code).
void AddVerifyTokenCommand(CLI::App& verify);

// Runs the command, writing the summary (or JSON) to `out` and errors to `err`. Returns the exit
// code (kVerifyExit* of verify_cmd.h).
int RunVerifyToken(const VerifyTokenOptions& options, std::ostream& out, std::ostream& err);

}  // namespace pml::pmlctl
