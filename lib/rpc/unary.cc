#include "lib/rpc/unary.h"

#include <spdlog/spdlog.h>

#include "absl/strings/match.h"

namespace pml::rpc {

absl::StatusOr<std::optional<Identity>> Authorize(const grpc::CallbackServerContext& ctx,
                                                  const RoleTable& roles,
                                                  absl::string_view full_method) {
  const MethodAccess* access = roles.Find(full_method);
  if (access == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("method ", full_method, " is not in the role table"));
  }
  if (access->local_unix && absl::StartsWith(ctx.peer(), "unix:"))
    return std::optional<Identity>();
  auto auth = ctx.auth_context();
  absl::StatusOr<Identity> id = auth == nullptr
                                    ? absl::UnauthenticatedError("no client certificate")
                                    : IdentityFromAuthContext(*auth);
  if (access->public_method) {
    if (id.ok()) return std::optional<Identity>(*id);
    return std::optional<Identity>();
  }
  if (!id.ok()) return id.status();
  absl::Status allowed = roles.Check(full_method, *id);
  if (!allowed.ok()) {
    SPDLOG_DEBUG("rpc_denied method={} peer_role={} peer_name={:?}", full_method,
                 RoleName(id->role), id->name);
    return allowed;
  }
  return std::optional<Identity>(*id);
}

grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, absl::string_view full_method,
                                   const ServiceEnv& env, UnaryBody body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto id = Authorize(*ctx, *env.roles, full_method);
  if (!id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  const bool queued = env.executor->TrySubmit(
      [reactor, ctx, body = std::move(body), identity = *std::move(id)]() {
        if (ctx->IsCancelled()) {
          reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
          return;
        }
        reactor->Finish(ToGrpcStatus(body(identity)));
      });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "server is busy: request queue is full, retry later"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* Unimplemented(grpc::CallbackServerContext* ctx,
                                        absl::string_view full_method, const ServiceEnv& env,
                                        absl::string_view what_is_missing) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto id = Authorize(*ctx, *env.roles, full_method);
  if (!id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
  } else {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, std::string(what_is_missing)));
  }
  return reactor;
}

}  // namespace pml::rpc
