#pragma once
// pml.attestation.v1 ↔ verifier core types (STYLE.md §1: proto conversion lives in the service).
// Request conversions validate what the core cannot see in a proto (oneofs, byte lengths,
// timestamp ranges) and fail with kInvalidArgument naming the field; result conversions cannot
// fail. Thread-safety: pure functions.

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/tcb_info.h"
#include "pml/attestation/v1/attestation.pb.h"
#include "services/attestation/gpu_core.h"
#include "services/attestation/verifier_core.h"

namespace pml::attestation {

// VerifyTdxQuoteRequest → core input. kInvalidArgument naming `quote` (empty), `collateral_json`
// (does not parse: the lib/tdx class and field follow), `collateral_fields.<field>` (missing) or
// `verification_time` (out of the Timestamp range). The quote itself is parsed by the core.
absl::StatusOr<TdxVerifyInput> TdxVerifyInputFromProto(const v1::VerifyTdxQuoteRequest& req);

// QuoteCollateral → tdx::Collateral. kInvalidArgument "collateral_fields.<field>: missing" for
// any empty required field (all but pck_certificate_chain).
absl::StatusOr<tdx::Collateral> CollateralFromProto(const v1::QuoteCollateral& c);

// A Timestamp → absl::Time. kInvalidArgument naming `field` when seconds are outside
// 0001-01-01..9999-12-31 or nanos outside [0, 1e9).
absl::StatusOr<absl::Time> TimeFromProto(const google::protobuf::Timestamp& ts,
                                         absl::string_view field);
// Leaves `out` untouched for infinite times.
void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);

v1::TcbStatus TcbStatusToProto(tdx::TcbStatus s);

// The full result: every parsed header and body field, the TCB evaluation when it ran, the
// collateral window, the origin and the event-log replay.
void TdxVerificationToProto(const TdxVerification& v, v1::TdxQuoteVerification* out);

// Cache status, keeping only entries of `req.kinds` (empty: all; this verifier caches only
// COLLATERAL_KIND_INTEL_TCB items).
void CacheStatusToProto(const CacheStatus& status, const v1::GetCollateralCacheStatusRequest& req,
                        v1::GetCollateralCacheStatusResponse* out);
void CachedCollateralToProto(const CachedCollateral& e, v1::CollateralCacheEntry* out);

// kInvalidArgument "fmspcs[i]: N bytes, want 6". `*intel` is false when `kinds` is non-empty
// and excludes Intel items (then there is nothing for this verifier to refresh).
absl::StatusOr<RefreshInput> RefreshInputFromProto(const v1::RefreshCollateralRequest& req,
                                                   bool* intel);
void RefreshResultToProto(const RefreshResult& r, v1::RefreshCollateralResponse* out);

// VerifyGpuEvidenceRequest → GPU core input. kInvalidArgument naming `expected_nonce` (not 32
// bytes), `evidence[i].arch` / `.device_kind` (inconsistent: LS10 is a switch architecture) or
// `verification_time`. Reports and chains are parsed by the core.
absl::StatusOr<GpuVerifyInput> GpuVerifyInputFromProto(const v1::VerifyGpuEvidenceRequest& req);

// The per-device claims (NVIDIA's names), the overall verdict, the topology check and the NVAT
// JSON. A device that did not verify gets passed = false, its error class in failed_checks and
// the claims of the checks it did pass (the verifier's order: chain, architecture, signature,
// nonce, FWID).
void GpuVerificationToProto(const GpuVerification& v, v1::VerifyGpuEvidenceResponse* out);

}  // namespace pml::attestation
