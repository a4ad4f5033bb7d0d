#include "lib/rpc/client.h"

#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/rpc/metrics.h"

namespace pml::rpc {

std::string RetryServiceConfigJson(const std::vector<std::string>& methods) {
  std::vector<std::string> names;
  for (const auto& m : methods) {
    auto [service, method] = SplitMethodName(m);
    names.push_back(absl::StrCat(R"({"service":")", service, R"(","method":")", method, R"("})"));
  }
  return absl::StrCat(R"({"methodConfig":[{"name":[)", absl::StrJoin(names, ","),
                      R"(],"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.1s",)",
                      R"("maxBackoff":"1s","backoffMultiplier":2,)",
                      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientConfig& config) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(config.max_message_bytes);
  args.SetMaxSendMessageSize(config.max_message_bytes);
  if (!config.idempotent_methods.empty()) {
    args.SetServiceConfigJSON(RetryServiceConfigJson(config.idempotent_methods));
  }
  if (config.insecure) {
    return grpc::CreateCustomChannel(config.target, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  auto read = [](const std::string& path, absl::string_view what) -> absl::StatusOr<std::string> {
    auto s = core::ReadFile(path, 1 << 20);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.status().message()));
    return s;
  };
  if (config.tls.ca.empty()) return absl::InvalidArgumentError("a CA bundle (--ca) is required");
  PML_ASSIGN_OR_RETURN(ssl.pem_root_certs, read(config.tls.ca, "ca"));
  if (!config.tls.cert.empty() || !config.tls.key.empty()) {
    PML_ASSIGN_OR_RETURN(ssl.pem_cert_chain, read(config.tls.cert, "client certificate"));
    PML_ASSIGN_OR_RETURN(ssl.pem_private_key, read(config.tls.key, "client key"));
  }
  return grpc::CreateCustomChannel(config.target, grpc::SslCredentials(ssl), args);
}

}  // namespace pml::rpc
