#pragma once
// How pmlctl reaches a service: --addr plus either --pki-dir/--as (the dev PKI layout) or
// explicit --ca/--cert/--key.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lib/rpc/client.h"

namespace pml::pmlctl {

struct ClientFlags {
  std::string addr;
  std::string pki_dir;
  std::string as_role = "operator";
  std::string ca, cert, key;
  double timeout_seconds = 10;
};

// Adds the connection flags to a subcommand.
void AddClientFlags(CLI::App& cmd, ClientFlags& flags);

// Resolves the flags into a channel. kInvalidArgument naming the missing flag or file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ClientFlags& flags);

}  // namespace pml::pmlctl
