#pragma once
// What pmlctl's service commands (kms, policy, token, gpu, image, host, vm) share: their exit
// codes, the subcommand callback that hands an exit code to CLI11, error printing, unary calls
// with a deadline, following a listing's page tokens, and the flag parsing and text output
// (hex, tables, timestamps) more than one command uses.
//
// Thread-safety: FormatTable, Hex, HexOrDash, OrDash, FormatTimestamp and ParseAppIdFlag are pure
// and thread-safe. PrintError writes std::cout/std::cerr and ReadFileOrStdin reads std::cin:
// call them from one thread (pmlctl's main thread). Call and FollowPages are as thread-safe as
// the stub and callback given to them.

#include <cstddef>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/status.h"
#include "lib/rpc/client.h"
#include "lib/rpc/status_convert.h"
#include "tools/pmlctl/client_flags.h"

namespace pml::pmlctl {

// ---- exit codes and the subcommand callback

// 0 done; 1 refused by the service (or by a check pmlctl makes on its answer or on a local
// policy); 2 usage or local I/O error. Errors CLI11 finds exit with its own codes (100 and up).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;
inline constexpr int kExitUsage = 2;

// Sets `footer` (the exit codes, as the command's --help shows them) on `cmd` and makes `run`
// (returning an exit code) its callback: after `run`, std::cout is flushed and the code is thrown
// as CLI::RuntimeError, which CLI11_PARSE turns into main's return value without printing
// anything. `footer` must outlive parsing (a string literal).
template <typename Fn>
void OnParsed(CLI::App* cmd, const char* footer, Fn run) {
  cmd->footer(footer);
  cmd->callback([run] {
    const int code = run();
    std::cout.flush();
    throw CLI::RuntimeError{code};
  });
}

// Flushes std::cout (so the error comes after what was printed), prints
// "pmlctl <command>: error: <status>" to std::cerr and returns `exit_code`. `command` is the full
// subcommand path, e.g. "kms policy put".
int PrintError(absl::string_view command, int exit_code, const absl::Status& status);

// ---- calls

// A stub of `Service` (a generated gRPC service class) on the channel the flags describe.
// Connect's errors (kInvalidArgument naming the missing flag or file).
template <typename Service>
absl::StatusOr<std::unique_ptr<typename Service::Stub>> MakeStub(const ClientFlags& flags) {
  PML_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Connect(flags));
  return Service::NewStub(channel);
}

// One unary call of `method` on `stub` with a deadline `timeout` from now; the gRPC status as an
// absl::Status (same code and message; DEADLINE_EXCEEDED when the deadline passes).
template <typename Stub, typename Req, typename Resp>
absl::Status Call(absl::Duration timeout, Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, timeout);
  return rpc::FromGrpcStatus((stub.*method)(&ctx, req, resp));
}

// The same with the deadline --timeout-seconds (flags.timeout_seconds) plus `extra` (for calls
// the server may hold longer, such as a graceful StopVm).
template <typename Stub, typename Req, typename Resp>
absl::Status Call(const ClientFlags& flags, Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp, absl::Duration extra = absl::ZeroDuration()) {
  return Call(absl::Seconds(flags.timeout_seconds) + extra, stub, method, req, resp);
}

// Follows a listing's pages: calls `fetch_page(token)` with `first_token` ("" for the first
// page), then with each next_page_token it returns, until it returns "" (the last page, or the
// caller has seen enough). fetch_page makes the call and handles the page's items. OK when the
// listing ended; fetch_page's error as is; kInternal when the service returns a token it
// returned before (it would loop forever) or when `max_pages` pages did not reach the end.
absl::Status FollowPages(
    int max_pages, absl::string_view first_token,
    absl::FunctionRef<absl::StatusOr<std::string>(const std::string& page_token)> fetch_page);

// ---- input

// The bytes of file `path`, or of standard input when `path` is "-", at most `max_bytes`.
// core::ReadFile's errors for a file (kNotFound, kPermissionDenied, kInvalidArgument when larger,
// naming the path); kInvalidArgument when standard input holds more than `max_bytes`.
absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path, size_t max_bytes);

// An app id given as 40 hex digits (either case, optional 0x): the 20 raw bytes.
// kInvalidArgument naming `flag` and the bad value (at most 64 characters of it): not hex, or
// not 20 bytes (the message gives the digit count).
absl::StatusOr<std::string> ParseAppIdFlag(absl::string_view flag, absl::string_view text);

// ---- output

// `rows` as text: each column padded to its widest cell plus two spaces, each line starting with
// `indent`, trailing whitespace stripped, each line ending in a newline. Rows may differ in
// length. "" for no rows.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        absl::string_view indent);

// `bytes` as lower-case hex; HexOrDash gives "-" for no bytes, OrDash "-" for empty text.
std::string Hex(absl::string_view bytes);
std::string HexOrDash(absl::string_view bytes);
std::string OrDash(absl::string_view text);

// "2025-07-01T12:00:00Z" (UTC; fractional seconds only when the nanos are not zero, as few
// digits as needed: "2025-07-01T12:00:00.25Z"), "-" for an unset (zero) timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);

}  // namespace pml::pmlctl
