#pragma once
// The one place absl::Status becomes grpc::Status (STYLE.md §3). Both use google.rpc.Code
// numbers, so the code is a cast. kInternal (and kUnknown/kDataLoss) never leak details: the
// caller gets a generic message with a correlation id, and the detail is logged here.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace pml::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for clients that call other services.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Go-style code name as go-grpc-prometheus labels it ("OK", "InvalidArgument", ...).
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace pml::rpc
