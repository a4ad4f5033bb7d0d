#pragma once
// RunUnary: the one way a callback-API unary handler runs (STYLE.md §6). It checks the caller
// against the role table before the body, runs the body on the service's bounded executor (a
// full queue answers RESOURCE_EXHAUSTED), converts the absl::Status at the edge and finishes.
//
//   grpc::ServerUnaryReactor* Svc::CreateVm(grpc::CallbackServerContext* ctx,
//       const CreateVmRequest* req, CreateVmResponse* resp) {
//     return rpc::RunUnary(ctx, kCreateVmMethod, *env_, [=]() -> absl::Status { ... });
//   }

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "lib/rpc/authz.h"
#include "lib/rpc/executor.h"
#include "lib/rpc/identity.h"
#include "lib/rpc/status_convert.h"

namespace pml::rpc {

// What every service handler needs from its server: the role table and the executor.
struct ServiceEnv {
  const RoleTable* roles = nullptr;
  Executor* executor = nullptr;
};

// Checks the caller of `full_method` against `roles`. Returns the identity (nullopt for a
// public method called without a certificate, or a local_unix method called on a unix socket)
// or PERMISSION_DENIED / UNAUTHENTICATED.
absl::StatusOr<std::optional<Identity>> Authorize(const grpc::CallbackServerContext& ctx,
                                                  const RoleTable& roles,
                                                  absl::string_view full_method);

// Body receives the caller identity (nullopt only for public methods).
using UnaryBody = std::function<absl::Status(const std::optional<Identity>&)>;

grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, absl::string_view full_method,
                                   const ServiceEnv& env, UnaryBody body);

// For RPCs whose behaviour lands in a later issue: checks the role table (so authorization is
// already observable) and answers UNIMPLEMENTED with `what_is_missing`.
grpc::ServerUnaryReactor* Unimplemented(grpc::CallbackServerContext* ctx,
                                        absl::string_view full_method, const ServiceEnv& env,
                                        absl::string_view what_is_missing);

// A server-streaming reactor that finishes at once with `status` (authorization failures and
// streams that are not implemented yet).
template <typename T>
class FinishedWriteReactor final : public grpc::ServerWriteReactor<T> {
 public:
  explicit FinishedWriteReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

template <typename T>
grpc::ServerWriteReactor<T>* UnimplementedStream(grpc::CallbackServerContext* ctx,
                                                 absl::string_view full_method,
                                                 const ServiceEnv& env,
                                                 absl::string_view what_is_missing) {
  auto id = Authorize(*ctx, *env.roles, full_method);
  if (!id.ok()) return new FinishedWriteReactor<T>(ToGrpcStatus(id.status()));
  return new FinishedWriteReactor<T>(
      grpc::Status(grpc::StatusCode::UNIMPLEMENTED, std::string(what_is_missing)));
}

}  // namespace pml::rpc

// Declares an override of a unary method that is not implemented yet (see Unimplemented).
// Needs a member `env_` (ServiceEnv) in the service class. `svc` is the full service name
// string literal, `ns` the generated message namespace.
#define PML_UNIMPLEMENTED_UNARY(svc, ns, method, what)                                    \
  grpc::ServerUnaryReactor* method(grpc::CallbackServerContext* ctx,                      \
                                   const ns::method##Request*, ns::method##Response*)     \
      override {                                                                          \
    return ::pml::rpc::Unimplemented(ctx, "/" svc "/" #method, env_, what);               \
  }
