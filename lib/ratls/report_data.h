#pragma once
// What a TDX quote's 64-byte report data commits to, per use (DESIGN.md §4). Every producer (the
// guest agent, the KMS client, RA-TLS certificates) and every checker (the verifier's appraisal,
// the KMS) computes report data here, so the prefixes are written once:
//
//   kRaTlsCert        SHA-512("ratls-cert:" ‖ SubjectPublicKeyInfo DER)       (dstack RA-TLS)
//   kKmsKeyRelease    SHA-512("pml-kms-key-release:" ‖ X25519 public key, 32 B)
//   kKmsReplicaJoin   SHA-512("pml-kms-replica-join:" ‖ X25519 public key, 32 B)
//   kNonce            the relying party's nonce (1..64 bytes), zero-padded to 64 (NEAR's
//                     signing_address ‖ nonce layout is one such 64-byte value)
//   kAppData          SHA-512("app-data:" ‖ value)                           (dstack Tappd default)
//
// GPU evidence taken for the same attestation uses GpuNonce(report_data) =
// SHA-256("pml-gpu-nonce:" ‖ report_data): 32 bytes, as NVIDIA's SPDM requests need, bound to
// all 64 bytes of the report data (dstack and NEAR reuse a bare request nonce, which binds GPU
// evidence to nothing the quote signs when report data carries more than that nonce).
//
// Thread-safety: pure functions.

#include <array>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::ratls {

using ReportData = std::array<uint8_t, 64>;
using GpuNonceBytes = std::array<uint8_t, 32>;

enum class ReportDataPurpose { kRaTlsCert, kKmsKeyRelease, kKmsReplicaJoin, kNonce, kAppData };

inline constexpr absl::string_view kRaTlsCertPrefix = "ratls-cert:";
inline constexpr absl::string_view kKmsKeyReleasePrefix = "pml-kms-key-release:";
inline constexpr absl::string_view kKmsReplicaJoinPrefix = "pml-kms-replica-join:";
inline constexpr absl::string_view kAppDataPrefix = "app-data:";
inline constexpr absl::string_view kGpuNoncePrefix = "pml-gpu-nonce:";

// "ra_tls_cert", "kms_key_release", "kms_replica_join", "nonce", "app_data".
absl::string_view PurposeName(ReportDataPurpose purpose);

// The report data for `value` used for `purpose`. kInvalidArgument when the value does not fit
// the purpose: an empty SPKI, an X25519 key that is not 32 bytes, a nonce that is empty or longer
// than 64 bytes.
absl::StatusOr<ReportData> ComputeReportData(ReportDataPurpose purpose,
                                             absl::Span<const uint8_t> value);

// The nonce GPU evidence for this report data is taken with (see above).
GpuNonceBytes GpuNonce(const ReportData& report_data);

}  // namespace pml::ratls
