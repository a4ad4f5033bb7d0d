#pragma once
// pml.attestation.v1 ↔ appraisal types (Appraise, policies, token keys). Request conversions fail
// with kInvalidArgument naming the field; result conversions cannot fail. Pure functions.

#include "absl/status/statusor.h"
#include "pml/attestation/v1/attestation.pb.h"
#include "services/attestation/appraiser.h"
#include "services/attestation/policy_store.h"

namespace pml::attestation {

// AppraiseRequest → input. kInvalidArgument naming `evidence` (missing), `report_data` (not 64
// bytes), `binding.purpose` / `binding.value` (lib/ratls's reason), `expected_report_data` /
// `policy` (neither given), `policy_id`, `verification_time`, `evidence.gpus[i].arch`.
absl::StatusOr<AppraiseInput> AppraiseInputFromProto(const v1::AppraiseRequest& req);

void AppraisalResultToProto(const AppraisalResult& r, v1::AppraiseResponse* out);

void PolicyRecordToProto(const PolicyRecord& r, v1::Policy* out);

}  // namespace pml::attestation
