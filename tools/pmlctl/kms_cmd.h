#pragma once
// Operator commands for pml-kms (proto/pml/kms/v1/kms.proto). All but `env-key` talk to the
// operator listener's pml.kms.v1.KmsAdmin over mTLS with the client flags of client_flags.h (the
// default role is operator; viewer may run get, list, audit and info):
//
//   pmlctl kms policy put --app-id HEX40 (--verifier-policy ID [--verifier-policy-version N] |
//                         --inline-policy FILE) [--description TEXT] [--expected-version N]
//       PutAppPolicy. An inline FILE ("-": standard input) is checked locally with
//       attestation::ParsePolicyJson first. Prints the stored binding (FormatAppPolicy).
//   pmlctl kms policy get --app-id HEX40          GetAppPolicy: the binding
//   pmlctl kms policy list [--page-size N]        ListAppPolicies, every page: a table
//   pmlctl kms policy rm --app-id HEX40           DeleteAppPolicy
//   pmlctl kms rotate [--reason TEXT] [--expected-epoch N]
//       RotateRootKeys: the new and the previous epoch and the new epoch's public material.
//   pmlctl kms audit [--app-id HEX40] [--since T] [--until T] [--action A] [--outcome O]
//                    [--limit N] [--json]
//       ListAuditEvents, every page (oldest first), one line per event (FormatAuditEvent) or one
//       JSON object per line (AuditEventJsonLine), printed as the pages arrive.
//   pmlctl kms info [--json] [--root-ca-out FILE]
//       GetKmsInfo; --root-ca-out writes epoch 1's root CA certificate (the cluster's identity
//       root, whose SPKI is key_provider_id: what guests pin) as PEM.
//   pmlctl kms env-key --guest-addr HOST:PORT --kms-root-ca FILE --app-id HEX40 [--epoch N]
//       The guest-facing listener's KeyRelease, over TLS *without* a client certificate (the
//       server must chain to --kms-root-ca): GetPublicInfo, then GetAppEnvEncryptPubKey, whose
//       signature must recover that epoch's k256 root public key (VerifyEnvEncryptPubKey).
//
// Exit codes (as `pmlctl policy`): 0 done; 1 refused by the service (its gRPC code and message
// are printed; UNAVAILABLE and DEADLINE_EXCEEDED included), or a check pmlctl makes on the answer
// failed (a signature that does not verify, a key_provider_id that is not the root CA's SPKI), or
// the local check of an inline policy failed; 2 usage or local I/O error (a malformed --app-id,
// --since or --action, both or neither of --verifier-policy/--inline-policy, an unreadable file or
// PEM, an unwritable --root-ca-out). Errors the argument parser finds (a missing --addr, a
// non-numeric --epoch) exit with CLI11's codes (100 and up).
//
// The helpers below are the commands' pure parts, exposed for tests. Thread-safety: all are pure
// functions. The commands read std::cin (--inline-policy -) and write std::cout/std::cerr.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "pml/kms/v1/kms.pb.h"

namespace pml::pmlctl {

// Registers `kms` (policy put|get|list|rm, rotate, audit, info, env-key) on `app`. Each
// subcommand's callback runs the call and ends parsing with CLI::RuntimeError(exit code), like
// `policy`.
void AddKmsCommands(CLI::App& app);

// ---- flag parsing (kInvalidArgument naming `flag` and the bad value, at most 64 characters;
// --app-id is cli_util.h's ParseAppIdFlag)

// RFC 3339 ("2025-07-01T00:00:00Z", any offset) or unix seconds.
absl::StatusOr<absl::Time> ParseTimeFlag(absl::string_view flag, absl::string_view text);

// The kebab-case names of the audit enums without their prefix: "key-release", "cert-sign",
// "replica-join", "policy-put", "policy-delete", "root-key-rotate", "root-key-generate";
// "allowed", "refused", "error". Parse* refuses UNSPECIFIED's name and anything else.
absl::StatusOr<kms::v1::AuditAction> ParseAuditAction(absl::string_view name);
absl::StatusOr<kms::v1::AuditOutcome> ParseAuditOutcome(absl::string_view name);
// The name of a value; "unspecified" for 0 and "unknown(N)" for a value this build lacks.
std::string AuditActionName(kms::v1::AuditAction action);
std::string AuditOutcomeName(kms::v1::AuditOutcome outcome);

// ---- output

// A binding's policy in one token: "verifier:ID@latest", "verifier:ID@vN", or
// "inline:<first 12 hex of SHA-256 of the JSON>"; "-" when neither is set.
std::string AppPolicyRef(const kms::v1::AppPolicy& p);

// The binding as `policy put` and `policy get` print it, several "key: value" lines (app id,
// version, policy, description, updated_by, update time), each ending in a newline.
std::string FormatAppPolicy(const kms::v1::AppPolicy& p);

// One audit event on one line (no newline): sequence, time, action, outcome, then caller=, app=,
// epoch=, verifier=, policy=, failed=[a,b], reason="…" (C-escaped) and a trailing " SIMULATED"
// when the evidence was simulated. Empty values print as "-".
std::string FormatAuditEvent(const kms::v1::AuditEvent& e);

// One audit event as a one-line JSON object: every field of AuditEvent under its proto name,
// bytes as lower-case hex, action and outcome by their ParseAudit* names, time as RFC 3339.
std::string AuditEventJsonLine(const kms::v1::AuditEvent& e);

// GetKmsInfo as text (several lines) or as a pretty JSON object (bytes as hex).
std::string FormatKmsInfo(const kms::v1::GetKmsInfoResponse& info);
std::string KmsInfoJson(const kms::v1::GetKmsInfoResponse& info);

// Epoch 1's root CA certificate as PEM. kNotFound when `info` has no epoch 1;
// kInvalidArgument when its certificate does not parse; kFailedPrecondition when its SPKI is not
// the one key_provider_id names (the KMS answered inconsistently: nothing to pin).
absl::StatusOr<std::string> IdentityRootCaPem(const kms::v1::GetKmsInfoResponse& info);

// ---- env-encryption public key (dstack format)

// "dstack-env-encrypt-pubkey:" ‖ app_id ‖ be64(timestamp) ‖ public_key; without the timestamp
// when it is nullopt (the legacy signature_v0 form).
std::vector<uint8_t> EnvEncryptPubKeyMessage(absl::Span<const uint8_t> app_id,
                                             std::optional<uint64_t> timestamp,
                                             absl::Span<const uint8_t> public_key);

// Checks `resp` for the 20-byte `app_id`: a 32-byte public key, and a signature (and
// signature_v0 when present) from which Keccak-256 of EnvEncryptPubKeyMessage recovers the
// k256_public_key of epoch resp.epoch() in `info`. OK when valid; kNotFound when `info` lacks
// that epoch; kInvalidArgument when a field has the wrong length or a signature recovers no key;
// kUnauthenticated when a signature recovers another key (the message says which signature).
absl::Status VerifyEnvEncryptPubKey(absl::string_view app_id,
                                    const kms::v1::GetAppEnvEncryptPubKeyResponse& resp,
                                    const kms::v1::GetPublicInfoResponse& info);

}  // namespace pml::pmlctl
