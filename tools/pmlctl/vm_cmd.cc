#include "tools/pmlctl/vm_cmd.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/rpc/client.h"
#include "lib/rpc/status_convert.h"
#include "pml/vmm/v1/vmm.grpc.pb.h"
#include "tools/pmlctl/cli_util.h"
#include "tools/pmlctl/client_flags.h"

namespace pml::pmlctl {
namespace {

namespace v1 = ::pml::vmm::v1;
using ::pml::common::v1::TeeMode;
using Stub = v1::Vmm::Stub;

// The VMM's limits on what it accepts (services/vmm/vm_spec.h), checked here only to read files
// with a bound; the server enforces them.
constexpr size_t kMaxAppComposeBytes = 1 << 20;
constexpr size_t kMaxEncryptedEnvBytes = 64 << 10;
constexpr size_t kMaxRequestIdChars = 128;

constexpr size_t kComposeHashBytes = 32;
constexpr size_t kAppIdBytes = 20;
constexpr size_t kMrConfigIdBytes = 48;
constexpr uint8_t kMrConfigIdV1 = 0x01;  // dstack-compat.md §3.2: 0x01 ‖ compose_hash ‖ 0…

// Bound on the pages a listing follows: far above any real host.
constexpr int kMaxListPages = 10000;
// ListVms' cap on one page (vmm.proto).
constexpr int32_t kMaxVmPageSize = 1000;
// StopVm's own default when timeout_seconds is 0 (vmm.proto).
constexpr uint32_t kDefaultStopSeconds = 30;

constexpr absl::string_view kPortForm =
    "want PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT, e.g. tcp:127.0.0.1:10022:22";
constexpr absl::string_view kDefaultHostAddress = "127.0.0.1";

// ---- enum names

// "VM_STATE_RUNNING" with prefix "VM_STATE_" → "running"; underscores become dashes.
std::string ShortEnumName(const google::protobuf::EnumDescriptor& d, int number,
                          absl::string_view prefix) {
  if (number == 0) {
    return "unspecified";
  }
  const google::protobuf::EnumValueDescriptor* v = d.FindValueByNumber(number);
  if (v == nullptr) {
    return absl::StrCat("unknown(", number, ")");
  }
  absl::string_view name = v->name();
  absl::ConsumePrefix(&name, prefix);
  std::string out = absl::AsciiStrToLower(name);
  std::replace(out.begin(), out.end(), '_', '-');
  return out;
}

std::vector<std::string> EnumChoices(const google::protobuf::EnumDescriptor& d,
                                     absl::string_view prefix) {
  std::vector<std::string> names;
  for (int i = 0; i < d.value_count(); ++i) {
    if (d.value(i)->number() != 0) {
      names.push_back(ShortEnumName(d, d.value(i)->number(), prefix));
    }
  }
  return names;
}

absl::StatusOr<int> ParseEnumName(const google::protobuf::EnumDescriptor& d,
                                  absl::string_view prefix, absl::string_view flag,
                                  absl::string_view name) {
  for (int i = 0; i < d.value_count(); ++i) {
    const int number = d.value(i)->number();
    if (number != 0 && ShortEnumName(d, number, prefix) == name) {
      return number;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(flag, " \"", name.substr(0, 64),
                                                 "\": want one of ",
                                                 absl::StrJoin(EnumChoices(d, prefix), ", ")));
}

constexpr absl::string_view kVmStatePrefix = "VM_STATE_";
constexpr absl::string_view kGpuStatePrefix = "GPU_STATE_";
constexpr absl::string_view kEventTypePrefix = "VM_EVENT_TYPE_";
constexpr absl::string_view kTeeModePrefix = "TEE_MODE_";

// ---- small output helpers

std::string YesNo(bool b) { return b ? "yes" : "no"; }

std::string PortList(const google::protobuf::RepeatedPtrField<v1::PortForward>& ports) {
  std::vector<std::string> specs;
  for (const v1::PortForward& p : ports) {
    specs.push_back(FormatPortSpec(p));
  }
  return absl::StrJoin(specs, ",");
}

// The VM's GPUs: those it holds, else those its spec names.
std::vector<std::string> VmGpus(const v1::Vm& vm) {
  const auto& slots = vm.gpu_slots().empty() ? vm.spec().gpus().slots() : vm.gpu_slots();
  return {slots.begin(), slots.end()};
}

// ---- calls

// Every VM that `base` selects, following next_page_token from base.page_token().
absl::Status ListAllVms(const ClientFlags& flags, Stub& stub, v1::ListVmsRequest base,
                        std::vector<v1::Vm>* out) {
  return FollowPages(kMaxListPages, base.page_token(),
                     [&](const std::string& token) -> absl::StatusOr<std::string> {
                       base.set_page_token(token);
                       v1::ListVmsResponse resp;
                       PML_RETURN_IF_ERROR(Call(flags, stub, &Stub::ListVms, base, &resp));
                       out->insert(out->end(), resp.vms().begin(), resp.vms().end());
                       return resp.next_page_token();
                     });
}

// A VM argument as an id: UUID text as is, anything else by exact name (ListVms name_filter).
absl::StatusOr<std::string> ResolveVmRef(const ClientFlags& flags, Stub& stub,
                                         const std::string& ref) {
  if (LooksLikeVmId(ref)) {
    return ref;
  }
  v1::ListVmsRequest req;
  req.set_name_filter(ref);
  req.set_page_size(kMaxVmPageSize);
  std::vector<v1::Vm> candidates;
  if (absl::Status s = ListAllVms(flags, stub, req, &candidates); !s.ok()) {
    return core::Annotate(s, absl::StrCat("looking up VM name \"", ref.substr(0, 64), "\""));
  }
  return PickVmByName(ref, candidates);
}

absl::StatusOr<absl::Duration> ParseMaxDuration(absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--max-duration \"", text.substr(0, 64),
                                                   "\": want a positive duration, e.g. 24h, 90m"));
  }
  return d;
}

// Prints `resp` as protobuf JSON or as `text`.
void Print(bool json, const google::protobuf::Message& resp, const std::string& text) {
  std::cout << (json ? ProtoJson(resp, /*pretty=*/true) : text);
}

// ---- gpu ls / image ls / host info

struct GpuLsOptions {
  ClientFlags client;
  std::string state;
  bool json = false;
};

int RunGpuLs(const GpuLsOptions& o) {
  constexpr absl::string_view kCmd = "gpu ls";
  v1::ListGpusRequest req;
  if (!o.state.empty()) {
    auto state = ParseGpuState(o.state);
    if (!state.ok()) {
      return PrintError(kCmd, kExitUsage, state.status());
    }
    req.set_state(*state);
  }
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::ListGpusResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::ListGpus, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatGpuTable(resp));
  return kExitOk;
}

struct PlainOptions {
  ClientFlags client;
  bool json = false;
};

int RunImageLs(const PlainOptions& o) {
  constexpr absl::string_view kCmd = "image ls";
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::ListImagesResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::ListImages, v1::ListImagesRequest(), &resp);
      !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatImageTable(resp));
  return kExitOk;
}

int RunHostInfo(const PlainOptions& o) {
  constexpr absl::string_view kCmd = "host info";
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetHostInfoResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::GetHostInfo, v1::GetHostInfoRequest(), &resp);
      !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatHostInfo(resp));
  return kExitOk;
}

// ---- vm create

struct CreateOptions {
  ClientFlags client;
  CreateVmFlags flags;
  std::string gpus_mode;  // --gpus: "all" or empty
  int32_t numa_node = 0;
  bool json = false;
};

int RunCreate(CreateOptions o) {
  constexpr absl::string_view kCmd = "vm create";
  o.flags.all_gpus = o.gpus_mode == "all";
  if (o.flags.request_id.empty()) {
    o.flags.request_id = NewRequestId();
  }
  auto req = BuildCreateVmRequest(o.flags);
  if (!req.ok()) {
    return PrintError(kCmd, kExitUsage, req.status());
  }
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  // Before the call: a create that times out may still have happened, and the same request id
  // makes the retry return that VM instead of a second one.
  std::cerr << "request id: " << req->request_id() << " (retry with --request-id "
            << req->request_id() << " to make the retry idempotent)\n";
  v1::CreateVmResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::CreateVm, *req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatVm(resp.vm()));
  return kExitOk;
}

// ---- vm start / stop / rm / get

struct VmRefOptions {
  ClientFlags client;
  std::string vm;
  bool json = false;
  bool force = false;
  std::string timeout;  // stop only
};

// Connects and resolves o.vm; on failure prints the error and returns the exit code.
struct Target {
  std::unique_ptr<Stub> stub;
  std::string vm_id;
  int exit_code = kExitOk;
};

Target Open(absl::string_view cmd, const ClientFlags& client, const std::string& ref) {
  Target t;
  auto stub = MakeStub<v1::Vmm>(client);
  if (!stub.ok()) {
    t.exit_code = PrintError(cmd, kExitUsage, stub.status());
    return t;
  }
  t.stub = *std::move(stub);
  auto id = ResolveVmRef(client, *t.stub, ref);
  if (!id.ok()) {
    t.exit_code = PrintError(cmd, kExitRefused, id.status());
    return t;
  }
  t.vm_id = *id;
  return t;
}

int RunStart(const VmRefOptions& o) {
  constexpr absl::string_view kCmd = "vm start";
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::StartVmRequest req;
  req.set_vm_id(t.vm_id);
  v1::StartVmResponse resp;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::StartVm, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatVm(resp.vm()));
  return kExitOk;
}

int RunStop(const VmRefOptions& o) {
  constexpr absl::string_view kCmd = "vm stop";
  uint32_t timeout_seconds = 0;
  if (!o.timeout.empty()) {
    auto t = ParseStopTimeoutSeconds(o.timeout);
    if (!t.ok()) {
      return PrintError(kCmd, kExitUsage, t.status());
    }
    timeout_seconds = *t;
  }
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::StopVmRequest req;
  req.set_vm_id(t.vm_id);
  req.set_force(o.force);
  req.set_timeout_seconds(timeout_seconds);
  // The server may wait for the guest that long before it answers.
  const absl::Duration shutdown_wait =
      o.force ? absl::ZeroDuration()
              : absl::Seconds(timeout_seconds == 0 ? kDefaultStopSeconds : timeout_seconds);
  v1::StopVmResponse resp;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::StopVm, req, &resp, shutdown_wait); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatVm(resp.vm()));
  return kExitOk;
}

int RunRm(const VmRefOptions& o) {
  constexpr absl::string_view kCmd = "vm rm";
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::RemoveVmRequest req;
  req.set_vm_id(t.vm_id);
  req.set_force(o.force);
  v1::RemoveVmResponse resp;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::RemoveVm, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp,
        absl::StrCat("removed VM ", t.vm_id, t.vm_id == o.vm ? "" : absl::StrCat(" (", o.vm, ")"),
                     ": its GPUs, ports and disks are released\n"));
  return kExitOk;
}

int RunGet(const VmRefOptions& o) {
  constexpr absl::string_view kCmd = "vm get";
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::GetVmRequest req;
  req.set_vm_id(t.vm_id);
  v1::GetVmResponse resp;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::GetVm, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatVm(resp.vm()));
  return kExitOk;
}

// ---- vm ls

struct LsOptions {
  ClientFlags client;
  std::vector<std::string> states;
  std::string name;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
  bool json = false;
};

int RunLs(const LsOptions& o) {
  constexpr absl::string_view kCmd = "vm ls";
  v1::ListVmsRequest req;
  for (const std::string& s : o.states) {
    auto state = ParseVmState(s);
    if (!state.ok()) {
      return PrintError(kCmd, kExitUsage, state.status());
    }
    req.add_states(*state);
  }
  req.set_name_filter(o.name);
  req.set_page_size(o.page_size);
  req.set_page_token(o.page_token);
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::ListVmsResponse resp;
  if (o.all) {
    std::vector<v1::Vm> vms;
    if (absl::Status s = ListAllVms(o.client, **stub, req, &vms); !s.ok()) {
      return PrintError(kCmd, kExitRefused, s);
    }
    resp.mutable_vms()->Assign(vms.begin(), vms.end());
    resp.set_total_size(static_cast<int32_t>(vms.size()));
  } else if (absl::Status s = Call(o.client, **stub, &Stub::ListVms, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatVmTable(std::vector<v1::Vm>(resp.vms().begin(), resp.vms().end())));
  if (!resp.next_page_token().empty() && !o.json) {
    std::cout.flush();
    std::cerr << resp.vms_size() << " of " << resp.total_size()
              << " VMs shown; --all for every page, or --page-token " << resp.next_page_token()
              << " for the next\n";
  }
  return kExitOk;
}

// ---- vm logs / watch

struct LogsOptions {
  ClientFlags client;
  std::string vm;
  bool follow = false;
  uint64_t tail_bytes = 0;
  std::string max_duration = "24h";
};

int RunLogs(const LogsOptions& o) {
  constexpr absl::string_view kCmd = "vm logs";
  auto max = ParseMaxDuration(o.max_duration);
  if (!max.ok()) {
    return PrintError(kCmd, kExitUsage, max.status());
  }
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::StreamLogsRequest req;
  req.set_vm_id(t.vm_id);
  req.set_follow(o.follow);
  req.set_tail_bytes(o.tail_bytes);
  grpc::ClientContext ctx;
  // Every call has a deadline: a follow stream's is --max-duration, after which it ends cleanly.
  rpc::SetTimeout(ctx, o.follow ? *max : absl::Seconds(o.client.timeout_seconds));
  std::unique_ptr<grpc::ClientReader<v1::LogChunk>> reader = t.stub->StreamLogs(&ctx, req);
  v1::LogChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first && chunk.truncated()) {
      std::cerr << "(console output before byte " << chunk.offset() << " was rotated away)\n";
    }
    first = false;
    std::cout.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    std::cout.flush();
  }
  const grpc::Status s = reader->Finish();
  if (o.follow && s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::cerr << "(stopped following after --max-duration " << o.max_duration << ")\n";
    return kExitOk;
  }
  if (!s.ok()) {
    return PrintError(kCmd, kExitRefused, rpc::FromGrpcStatus(s));
  }
  return kExitOk;
}

struct WatchOptions {
  ClientFlags client;
  std::vector<std::string> vms;
  bool initial = false;
  std::string max_duration = "24h";
  bool json = false;
};

int RunWatch(const WatchOptions& o) {
  constexpr absl::string_view kCmd = "vm watch";
  auto max = ParseMaxDuration(o.max_duration);
  if (!max.ok()) {
    return PrintError(kCmd, kExitUsage, max.status());
  }
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::WatchVmsRequest req;
  for (const std::string& ref : o.vms) {
    auto id = ResolveVmRef(o.client, **stub, ref);
    if (!id.ok()) {
      return PrintError(kCmd, kExitRefused, id.status());
    }
    req.add_vm_ids(*id);
  }
  req.set_send_initial(o.initial);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, *max);
  std::unique_ptr<grpc::ClientReader<v1::VmEvent>> reader = (*stub)->WatchVms(&ctx, req);
  v1::VmEvent event;
  while (reader->Read(&event)) {
    std::cout << (o.json ? ProtoJson(event, /*pretty=*/false) : FormatVmEvent(event)) << "\n";
    std::cout.flush();
  }
  const grpc::Status s = reader->Finish();
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::cerr << "(stopped watching after --max-duration " << o.max_duration << ")\n";
    return kExitOk;
  }
  if (!s.ok()) {
    return PrintError(kCmd, kExitRefused, rpc::FromGrpcStatus(s));
  }
  return kExitOk;
}

// ---- vm update

struct UpdateOptions {
  ClientFlags client;
  std::string vm;
  UpdateVmFlags flags;
  // Bound by CLI11, moved into `flags` when their options were given.
  uint32_t vcpus = 0;
  std::string memory, disk, gpus_mode;
  bool hugepages = false, pin_numa = false;
  int32_t numa_node = 0;
  bool json = false;
};

int RunUpdate(const UpdateOptions& o) {
  constexpr absl::string_view kCmd = "vm update";
  Target t = Open(kCmd, o.client, o.vm);
  if (t.exit_code != kExitOk) {
    return t.exit_code;
  }
  v1::GetVmRequest get;
  get.set_vm_id(t.vm_id);
  v1::GetVmResponse current;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::GetVm, get, &current); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  auto req = BuildUpdateVmRequest(t.vm_id, o.flags, current.vm());
  if (!req.ok()) {
    return PrintError(kCmd, kExitUsage, req.status());
  }
  v1::UpdateVmResponse resp;
  if (absl::Status s = Call(o.client, *t.stub, &Stub::UpdateVm, *req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp,
        absl::StrCat("updated ", absl::StrJoin(req->update_mask().paths(), ", "), "\n",
                     FormatVm(resp.vm())));
  return kExitOk;
}

// ---- vm compose-hash

struct ComposeHashOptions {
  ClientFlags client;
  ComposeFlags compose;
  std::string name;
  bool kms_enabled = false;
  bool remote = false;
  bool json = false;
};

int RunComposeHash(const ComposeHashOptions& o) {
  constexpr absl::string_view kCmd = "vm compose-hash";
  if (!o.compose.app_compose_file.empty() && (!o.name.empty() || o.kms_enabled)) {
    return PrintError(
        kCmd, kExitUsage,
        absl::InvalidArgumentError("--name and --kms-enabled apply to --compose and "
                                   "--bash-script only (--app-compose is hashed as is)"));
  }
  auto compose = LoadAppCompose(o.compose, o.name, o.kms_enabled);
  if (!compose.ok()) {
    return PrintError(kCmd, kExitUsage, compose.status());
  }
  const v1::GetComposeHashResponse local = ComputeComposeHash(*compose);
  if (!o.remote) {
    Print(o.json, local, FormatComposeHash(local));
    return kExitOk;
  }
  if (o.client.addr.empty()) {
    return PrintError(kCmd, kExitUsage, absl::InvalidArgumentError("--remote needs --addr"));
  }
  auto stub = MakeStub<v1::Vmm>(o.client);
  if (!stub.ok()) {
    return PrintError(kCmd, kExitUsage, stub.status());
  }
  v1::GetComposeHashRequest req;
  req.set_app_compose(*compose);
  v1::GetComposeHashResponse resp;
  if (absl::Status s = Call(o.client, **stub, &Stub::GetComposeHash, req, &resp); !s.ok()) {
    return PrintError(kCmd, kExitRefused, s);
  }
  Print(o.json, resp, FormatComposeHash(resp));
  if (resp.SerializeAsString() != local.SerializeAsString()) {
    return PrintError(kCmd, kExitRefused,
                      absl::InternalError(absl::StrCat("the VMM's answer differs from pmlctl's own "
                                                       "computation (compose hash ",
                                                       Hex(local.compose_hash()), ")")));
  }
  return kExitOk;
}

// ---- registration

constexpr char kExitCodesFooter[] =
    "VM arguments take a VM id or the name of exactly one VM.\n"
    "Exit codes: 0 done; 1 refused by the service (its gRPC code and message are printed), or a\n"
    "VM argument that names no VM or several; 2 usage or local I/O error (a bad --port, --memory,\n"
    "--disk or --app-id, conflicting flags, an unreadable file). Errors the argument parser finds\n"
    "(a missing --addr, a non-numeric number) exit with CLI11's codes, 100 and up.";

void AddJsonFlag(CLI::App& cmd, bool& json) {
  cmd.add_flag("--json", json,
               "print the response as protobuf JSON (proto field names, every field, bytes as "
               "base64)");
}

void AddVmArg(CLI::App& cmd, std::string& vm) {
  cmd.add_option("vm", vm, "VM id, or the name of exactly one VM")->required();
}

void AddComposeFlags(CLI::App& cmd, ComposeFlags& c, absl::string_view name_from) {
  cmd.add_option("--compose", c.compose_file,
                 absl::StrCat("docker-compose file, wrapped into app-compose.json (runner "
                              "docker-compose) with ",
                              name_from,
                              " as dstack does: sorted keys, compact (the compose hash is "
                              "SHA-256 of those bytes)"));
  cmd.add_option("--app-compose", c.app_compose_file,
                 "app-compose.json (dstack format), sent byte for byte");
  cmd.add_option(
      "--bash-script", c.bash_script_file,
      absl::StrCat("bash script, wrapped like --compose with runner bash and ", name_from));
}

void AddGpuState(CLI::App& cmd, std::string& state) {
  cmd.add_option(
      "--state", state,
      absl::StrCat("only devices in this state: ",
                   absl::StrJoin(EnumChoices(*v1::GpuState_descriptor(), kGpuStatePrefix), ", "),
                   " (default: all)"));
}

void AddMaxDuration(CLI::App& cmd, std::string& max_duration) {
  cmd.add_option("--max-duration", max_duration,
                 "deadline of the stream (absl duration: 90m, 24h); when it passes the command "
                 "exits 0")
      ->capture_default_str();
}

void AddInventoryCommands(CLI::App& app) {
  auto* gpu = app.add_subcommand("gpu", "GPUs and NVSwitches of a pml-vmm host");
  gpu->require_subcommand(1);
  auto gpu_ls = std::make_shared<GpuLsOptions>();
  auto* gpu_ls_cmd = gpu->add_subcommand(
      "ls",
      "list the host's NVIDIA GPUs and NVSwitches (ListGpus, as dstack's lsgpu): PCI slot, kind,\n"
      "product name, NUMA node, IOMMU group, bound driver, state (free: bound to vfio-pci and\n"
      "held by no VM; claimed: held by the VM shown; unusable: for the reason shown)");
  AddClientFlags(*gpu_ls_cmd, gpu_ls->client);
  AddGpuState(*gpu_ls_cmd, gpu_ls->state);
  AddJsonFlag(*gpu_ls_cmd, gpu_ls->json);
  OnParsed(gpu_ls_cmd, kExitCodesFooter, [gpu_ls] { return RunGpuLs(*gpu_ls); });

  auto* image = app.add_subcommand("image", "guest images of a pml-vmm host");
  image->require_subcommand(1);
  auto image_ls = std::make_shared<PlainOptions>();
  auto* image_ls_cmd = image->add_subcommand(
      "ls",
      "list the guest images in the VMM's image directory (ListImages): name (what `vm create\n"
      "--image` takes), version, variant, whether it can boot as TDX, os_image_hash, and why it\n"
      "is unusable if it is");
  AddClientFlags(*image_ls_cmd, image_ls->client);
  AddJsonFlag(*image_ls_cmd, image_ls->json);
  OnParsed(image_ls_cmd, kExitCodesFooter, [image_ls] { return RunImageLs(*image_ls); });

  auto* host = app.add_subcommand("host", "a pml-vmm host");
  host->require_subcommand(1);
  auto host_info = std::make_shared<PlainOptions>();
  auto* host_info_cmd = host->add_subcommand(
      "info",
      "print the host's capabilities and resources (GetHostInfo): libvirt and QEMU versions,\n"
      "KVM, TDX support (or why not), CPUs and memory (MiB) with the VMM's limits and what VMs\n"
      "hold, NUMA nodes, hugepages, allowed host port ranges");
  AddClientFlags(*host_info_cmd, host_info->client);
  AddJsonFlag(*host_info_cmd, host_info->json);
  OnParsed(host_info_cmd, kExitCodesFooter, [host_info] { return RunHostInfo(*host_info); });
}

void AddCreateCommand(CLI::App& vm) {
  auto o = std::make_shared<CreateOptions>();
  auto* cmd = vm.add_subcommand(
      "create",
      "create (define) a VM (CreateVm): claims its GPUs and host ports, creates its data disk,\n"
      "writes its app config and defines the libvirt domain; starts it with --start. Idempotent\n"
      "per --request-id: the id used (a fresh UUID unless given) is printed to standard error\n"
      "before the call, so a create that failed or timed out can be retried safely. Prints the\n"
      "VM: id, name, state, TEE mode, compose hash, app id. Needs the operator role");
  AddClientFlags(*cmd, o->client);
  CreateVmFlags& f = o->flags;
  cmd->add_option("--name", f.name,
                  "VM name: 1-63 characters of [A-Za-z0-9._-], unique on the host")
      ->required();
  cmd->add_option("--image", f.image, "guest image name (`pmlctl image ls`)")->required();
  AddComposeFlags(*cmd, f.compose, "--name");
  cmd->add_option("--tee", f.tee,
                  "TEE mode: tdx (a TDX confidential VM), or none (no TEE: the guest uses the "
                  "SIMULATED TDX; development only)")
      ->required()
      ->check(CLI::IsMember({"tdx", "none"}));
  cmd->add_option("--vcpus", f.vcpus, "virtual CPUs")->capture_default_str();
  cmd->add_option("--memory", f.memory,
                  "guest memory: 2G, 2048M or 2048 (a bare number is MiB; units M/MiB, G/GiB, "
                  "T/TiB are powers of 1024)")
      ->capture_default_str();
  cmd->add_option("--disk", f.disk,
                  "size of the qcow2 data disk: 20G, 20 (a bare number is GiB) or 20480M; 0 for "
                  "no data disk")
      ->capture_default_str();
  // Repeatable options take one value per flag (allow_extra_args(false)): CLI11 would otherwise
  // let `--port A B` swallow B, and in `vm update --port A web` the VM argument.
  cmd->add_option("--gpu", f.gpus,
                  "PCI slot of a GPU or NVSwitch to pass through, e.g. 0000:18:00.0 (`pmlctl gpu "
                  "ls`; repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--gpus", o->gpus_mode,
                  "all: pass through every usable GPU and NVSwitch of the host")
      ->check(CLI::IsMember({"all"}));
  cmd->add_option("--port", f.ports,
                  "forward a host port to the guest: PROTO:HOST_ADDR:HOST_PORT:GUEST_PORT or "
                  "PROTO:HOST_PORT:GUEST_PORT (host address 127.0.0.1), PROTO tcp or udp, e.g. "
                  "tcp:127.0.0.1:10022:22 (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--hugepages", f.hugepages, "back guest memory with hugepages");
  cmd->add_flag("--pin-numa", f.pin_numa,
                "pin vCPUs and memory to the NUMA node of the VM's GPUs (or --numa-node)");
  auto* numa =
      cmd->add_option("--numa-node", o->numa_node,
                      "NUMA node to pin to (default: the GPUs' node; node 0 without GPUs)");
  cmd->add_option("--kms-url", f.kms_urls,
                  "URL of a KMS the guest gets its keys from, in order of preference "
                  "(repeatable); sets kms_enabled in a wrapped --compose/--bash-script")
      ->allow_extra_args(false);
  cmd->add_option("--encrypted-env-file", f.encrypted_env_file,
                  "encrypted environment (dstack .encrypted-env: eph_pk ‖ iv ‖ ciphertext+tag), "
                  "opaque to the VMM");
  cmd->add_option("--app-id", f.app_id,
                  "pinned app id: 40 hex digits (default: the first 20 bytes of the compose hash)");
  cmd->add_option("--request-id", f.request_id,
                  "1-128 characters that make the create idempotent (default: a fresh UUID)");
  cmd->add_flag("--start", f.start, "start the VM once created");
  AddJsonFlag(*cmd, o->json);
  OnParsed(cmd, kExitCodesFooter, [o, numa] {
    if (numa->count() > 0) {
      o->flags.numa_node = o->numa_node;
    }
    return RunCreate(*o);
  });
}

void AddLifecycleCommands(CLI::App& vm) {
  auto start = std::make_shared<VmRefOptions>();
  auto* start_cmd = vm.add_subcommand(
      "start",
      "start a stopped VM (StartVm); prints it (STARTING or RUNNING). Needs the operator "
      "role");
  AddClientFlags(*start_cmd, start->client);
  AddVmArg(*start_cmd, start->vm);
  AddJsonFlag(*start_cmd, start->json);
  OnParsed(start_cmd, kExitCodesFooter, [start] { return RunStart(*start); });

  auto stop = std::make_shared<VmRefOptions>();
  auto* stop_cmd = vm.add_subcommand(
      "stop",
      "stop a VM (StopVm): ACPI shutdown, forced off after --timeout; or forced off at once\n"
      "with --force. The call's deadline is --timeout-seconds plus the shutdown timeout. Needs\n"
      "the operator role");
  AddClientFlags(*stop_cmd, stop->client);
  AddVmArg(*stop_cmd, stop->vm);
  stop_cmd->add_flag("--force", stop->force, "power off at once instead of asking the guest");
  stop_cmd->add_option("--timeout", stop->timeout,
                       "how long the guest gets to shut down before it is forced off: 30s, 2m or "
                       "seconds (default: the VMM's, 30s)");
  AddJsonFlag(*stop_cmd, stop->json);
  OnParsed(stop_cmd, kExitCodesFooter, [stop] { return RunStop(*stop); });

  auto rm = std::make_shared<VmRefOptions>();
  auto* rm_cmd = vm.add_subcommand(
      "rm",
      "remove a VM (RemoveVm): undefines the domain and releases its GPUs, ports and disks (the\n"
      "data disk is deleted). A running VM needs --force. Needs the operator role");
  AddClientFlags(*rm_cmd, rm->client);
  AddVmArg(*rm_cmd, rm->vm);
  rm_cmd->add_flag("--force", rm->force, "force a running VM off first");
  AddJsonFlag(*rm_cmd, rm->json);
  OnParsed(rm_cmd, kExitCodesFooter, [rm] { return RunRm(*rm); });

  auto get = std::make_shared<VmRefOptions>();
  auto* get_cmd = vm.add_subcommand(
      "get",
      "print one VM (GetVm): state, TEE mode, image, resources, GPUs, ports, KMS URLs, compose\n"
      "hash, app id, instance id, MRCONFIGID, libvirt domain, times");
  AddClientFlags(*get_cmd, get->client);
  AddVmArg(*get_cmd, get->vm);
  AddJsonFlag(*get_cmd, get->json);
  OnParsed(get_cmd, kExitCodesFooter, [get] { return RunGet(*get); });

  auto ls = std::make_shared<LsOptions>();
  auto* ls_cmd = vm.add_subcommand(
      "ls",
      "list VMs (ListVms), oldest first: id, name, state, TEE mode, vCPUs, memory (MiB), GPU\n"
      "count, ports, creation time. One page unless --all");
  AddClientFlags(*ls_cmd, ls->client);
  ls_cmd
      ->add_option(
          "--state", ls->states,
          absl::StrCat("only VMs in this state (repeatable): ",
                       absl::StrJoin(EnumChoices(*v1::VmState_descriptor(), kVmStatePrefix), ", ")))
      ->allow_extra_args(false);
  ls_cmd->add_option("--name", ls->name, "only VMs whose name contains this text");
  ls_cmd
      ->add_option("--page-size", ls->page_size,
                   "VMs per page (0: the VMM's default of 100; at most 1000)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  ls_cmd->add_option("--page-token", ls->page_token, "start at this page (from a previous ls)");
  ls_cmd->add_flag("--all", ls->all, "follow every page");
  AddJsonFlag(*ls_cmd, ls->json);
  OnParsed(ls_cmd, kExitCodesFooter, [ls] { return RunLs(*ls); });
}

void AddStreamCommands(CLI::App& vm) {
  auto logs = std::make_shared<LogsOptions>();
  auto* logs_cmd = vm.add_subcommand(
      "logs",
      "write a VM's serial console output (StreamLogs) raw to standard output; with --follow,\n"
      "keep writing new output until Ctrl-C, the VM's removal or --max-duration");
  AddClientFlags(*logs_cmd, logs->client);
  AddVmArg(*logs_cmd, logs->vm);
  logs_cmd->add_flag("-f,--follow", logs->follow, "keep streaming new output");
  logs_cmd
      ->add_option("--tail", logs->tail_bytes,
                   "start this many bytes before the end of the kept output (0: from its start)")
      ->capture_default_str();
  AddMaxDuration(*logs_cmd, logs->max_duration);
  OnParsed(logs_cmd, kExitCodesFooter, [logs] { return RunLogs(*logs); });

  auto watch = std::make_shared<WatchOptions>();
  auto* watch_cmd = vm.add_subcommand(
      "watch",
      "print VM events (WatchVms) as they happen, one line each: time, type (created,\n"
      "state-changed, updated, removed; initial with --initial), VM id, name, state, reason; or\n"
      "one protobuf-JSON object per line with --json. Runs until Ctrl-C or --max-duration");
  AddClientFlags(*watch_cmd, watch->client);
  watch_cmd->add_option("vm", watch->vms, "only these VMs (ids or names; default: all)");
  watch_cmd->add_flag("--initial", watch->initial, "first print one event per existing VM");
  AddMaxDuration(*watch_cmd, watch->max_duration);
  watch_cmd->add_flag("--json", watch->json, "print one protobuf-JSON VmEvent per line");
  OnParsed(watch_cmd, kExitCodesFooter, [watch] { return RunWatch(*watch); });
}

void AddUpdateCommand(CLI::App& vm) {
  auto o = std::make_shared<UpdateOptions>();
  auto* cmd = vm.add_subcommand(
      "update",
      "change a stopped VM's spec (UpdateVm): only what the flags given name (the field mask\n"
      "is built from them); lists replace the whole list. A new compose changes the compose\n"
      "hash and MRCONFIGID; app id and instance id stay. Needs the operator role");
  AddClientFlags(*cmd, o->client);
  AddVmArg(*cmd, o->vm);
  UpdateVmFlags& f = o->flags;
  AddComposeFlags(*cmd, f.compose, "the VM's name");
  auto* vcpus = cmd->add_option("--vcpus", o->vcpus, "virtual CPUs");
  auto* memory = cmd->add_option("--memory", o->memory,
                                 "guest memory: 2G, 2048M or 2048 (a bare number is MiB)");
  auto* disk = cmd->add_option("--disk", o->disk,
                               "data disk size, grow only: 40G or 40 (a bare number is GiB)");
  cmd->add_option("--port", f.ports,
                  "the new port forwards, replacing all: PROTO:[HOST_ADDR:]HOST_PORT:GUEST_PORT "
                  "(repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-ports", f.no_ports, "remove every port forward");
  cmd->add_option("--gpu", f.gpus, "the new GPUs by PCI slot, replacing all (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--gpus", o->gpus_mode, "all: every usable GPU and NVSwitch")
      ->check(CLI::IsMember({"all"}));
  cmd->add_flag("--no-gpus", f.no_gpus, "remove every GPU");
  cmd->add_option("--kms-url", f.kms_urls, "the new KMS URLs, replacing all (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-kms-urls", f.no_kms_urls, "remove every KMS URL");
  cmd->add_option("--encrypted-env-file", f.encrypted_env_file,
                  "new encrypted environment (dstack .encrypted-env)");
  auto* hugepages = cmd->add_flag("--hugepages,!--no-hugepages", o->hugepages,
                                  "back guest memory with hugepages, or not");
  auto* pin = cmd->add_flag("--pin-numa,!--no-pin-numa", o->pin_numa,
                            "pin vCPUs and memory to a NUMA node, or not");
  auto* numa = cmd->add_option("--numa-node", o->numa_node, "NUMA node to pin to");
  cmd->add_flag("--no-numa-node", f.no_numa_node, "pin to the GPUs' node again");
  AddJsonFlag(*cmd, o->json);
  OnParsed(cmd, kExitCodesFooter, [o, vcpus, memory, disk, hugepages, pin, numa] {
    UpdateVmFlags& u = o->flags;
    if (vcpus->count() > 0) {
      u.vcpus = o->vcpus;
    }
    if (memory->count() > 0) {
      u.memory = o->memory;
    }
    if (disk->count() > 0) {
      u.disk = o->disk;
    }
    u.all_gpus = o->gpus_mode == "all";
    if (hugepages->count() > 0) {
      u.hugepages = o->hugepages;
    }
    if (pin->count() > 0) {
      u.pin_numa = o->pin_numa;
    }
    if (numa->count() > 0) {
      u.numa_node = o->numa_node;
    }
    return RunUpdate(*o);
  });
}

void AddComposeHashCommand(CLI::App& vm) {
  auto o = std::make_shared<ComposeHashOptions>();
  auto* cmd = vm.add_subcommand(
      "compose-hash",
      "print the compose hash (SHA-256 of the app-compose.json bytes), the default app id (its\n"
      "first 20 bytes) and the MRCONFIGID a TDX VM gets (0x01 ‖ hash ‖ zeros, 48 bytes),\n"
      "computed here without a server; --remote asks the VMM (GetComposeHash) instead and\n"
      "checks it agrees. --compose/--bash-script wrap the file exactly as `vm create` does");
  AddClientFlags(*cmd, o->client);
  cmd->get_option("--addr")->required(false)->description(
      "service address host:port (with --remote only)");
  AddComposeFlags(*cmd, o->compose, "--name");
  cmd->add_option("--name", o->name, "app name in a wrapped app-compose.json (the VM's name)");
  cmd->add_flag("--kms-enabled", o->kms_enabled,
                "kms_enabled true in a wrapped app-compose.json, as `vm create` sets when given "
                "--kms-url");
  cmd->add_flag("--remote", o->remote, "ask the VMM (GetComposeHash) with the connection flags");
  AddJsonFlag(*cmd, o->json);
  OnParsed(cmd, kExitCodesFooter, [o] { return RunComposeHash(*o); });
}

// Strict RFC 3629 check via nlohmann's serializer.
bool IsValidUtf8(absl::string_view s) {
  try {
    const std::string text(s);
    static_cast<void>(nlohmann::json(text).dump());
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, absl::string_view path,
                                         size_t max_bytes) {
  auto data = core::ReadFile(path, max_bytes);
  if (!data.ok()) {
    return core::Annotate(data.status(), flag);
  }
  return data;
}

// 1-65535 in plain decimal digits.
absl::StatusOr<uint32_t> ParsePortNumber(absl::string_view what, absl::string_view text) {
  uint32_t port = 0;
  const bool digits = !text.empty() && text.size() <= 5 &&
                      std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
  if (!digits || !absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", text.substr(0, 16), "\": want 1-65535"));
  }
  return port;
}

// A size as a whole number of MiB; `bare_mib` is the unit of a number without one.
absl::StatusOr<uint64_t> ParseSizeMib(absl::string_view flag, absl::string_view text,
                                      uint64_t bare_mib, absl::string_view bare_unit) {
  const std::string shown(text.substr(0, 64));
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " \"", shown, "\": ", why));
  };
  size_t n = 0;
  while (n < text.size() && absl::ascii_isdigit(text[n])) {
    ++n;
  }
  const std::string unit = absl::AsciiStrToLower(text.substr(n));
  uint64_t value = 0;
  if (n == 0 || n > 19 || !absl::SimpleAtoi(text.substr(0, n), &value)) {
    return bad(
        absl::StrCat("want a whole number with an optional unit M, G or T (MiB, GiB, TiB; "
                     "a bare number is ",
                     bare_unit, "), e.g. 2G"));
  }
  uint64_t mib_per_unit = 0;
  if (unit.empty()) {
    mib_per_unit = bare_mib;
  } else if (unit == "m" || unit == "mib") {
    mib_per_unit = 1;
  } else if (unit == "g" || unit == "gib") {
    mib_per_unit = 1024;
  } else if (unit == "t" || unit == "tib") {
    mib_per_unit = uint64_t{1024} * 1024;
  } else if (unit == "mb" || unit == "gb" || unit == "tb") {
    return bad(absl::StrCat("\"", unit, "\" is ambiguous: write ",
                            absl::AsciiStrToUpper(unit.substr(0, 1)), " or ",
                            absl::AsciiStrToUpper(unit.substr(0, 1)), "iB (powers of 1024)"));
  } else {
    return bad(absl::StrCat("unit \"", unit.substr(0, 16), "\": want M, G or T (MiB, GiB, TiB)"));
  }
  if (value > std::numeric_limits<uint64_t>::max() / mib_per_unit) {
    return bad("too large");
  }
  return value * mib_per_unit;
}

}  // namespace

// ---- registration

void AddVmmCommands(CLI::App& app) {
  AddInventoryCommands(app);
  auto* vm = app.add_subcommand(
      "vm",
      "confidential VMs on a pml-vmm host: create, start, stop, rm, get, ls, logs, watch,\n"
      "update, and compose-hash (offline)");
  vm->require_subcommand(1);
  AddCreateCommand(*vm);
  AddLifecycleCommands(*vm);
  AddStreamCommands(*vm);
  AddUpdateCommand(*vm);
  AddComposeHashCommand(*vm);
}

// ---- flag parsing

absl::StatusOr<v1::PortForward> ParsePortSpec(absl::string_view spec) {
  const std::string shown(spec.substr(0, 64));
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--port \"", shown, "\": ", why));
  };
  const size_t colon = spec.find(':');
  if (colon == absl::string_view::npos) {
    return bad(kPortForm);
  }
  v1::PortForward p;
  const std::string proto = absl::AsciiStrToLower(spec.substr(0, colon));
  if (proto == "tcp") {
    p.set_protocol(v1::PORT_PROTOCOL_TCP);
  } else if (proto == "udp") {
    p.set_protocol(v1::PORT_PROTOCOL_UDP);
  } else {
    return bad(
        absl::StrCat("protocol \"", absl::string_view(proto).substr(0, 16), "\": want tcp or udp"));
  }
  absl::string_view rest = spec.substr(colon + 1);
  std::string address(kDefaultHostAddress);
  std::vector<absl::string_view> ports;
  bool bracketed = false;
  if (absl::ConsumePrefix(&rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) {
      return bad("host address: no closing ']'");
    }
    const absl::string_view inside = rest.substr(0, close);
    address.assign(inside.data(), inside.size());
    rest.remove_prefix(close + 1);
    if (!absl::ConsumePrefix(&rest, ":")) {
      return bad(kPortForm);
    }
    ports = absl::StrSplit(rest, ':');
    if (ports.size() != 2) {
      return bad(kPortForm);
    }
    bracketed = true;
  } else {
    std::vector<absl::string_view> parts = absl::StrSplit(rest, ':');
    if (parts.size() == 3) {
      address.assign(parts[0].data(), parts[0].size());
      ports = {parts[1], parts[2]};
    } else if (parts.size() == 2) {
      ports = parts;
    } else if (parts.size() > 3) {
      return bad(absl::StrCat(kPortForm, " (an IPv6 host address goes in brackets: [::1])"));
    } else {
      return bad(kPortForm);
    }
  }
  if (address.empty()) {
    return bad("host address is empty");
  }
  unsigned char buf[16];
  const bool v4 = !bracketed && inet_pton(AF_INET, address.c_str(), buf) == 1;
  const bool v6 = bracketed && inet_pton(AF_INET6, address.c_str(), buf) == 1;
  if (!v4 && !v6) {
    return bad(absl::StrCat("host address \"", absl::string_view(address).substr(0, 45),
                            bracketed ? "\": want an IPv6 literal"
                                      : "\": want an IPv4 literal "
                                        "(IPv6 in brackets)"));
  }
  p.set_host_address(address);
  auto host_port = ParsePortNumber("host port", ports[0]);
  if (!host_port.ok()) {
    return bad(host_port.status().message());
  }
  auto guest_port = ParsePortNumber("guest port", ports[1]);
  if (!guest_port.ok()) {
    return bad(guest_port.status().message());
  }
  p.set_host_port(*host_port);
  p.set_guest_port(*guest_port);
  return p;
}

std::string FormatPortSpec(const v1::PortForward& p) {
  std::string proto;
  switch (p.protocol()) {
    case v1::PORT_PROTOCOL_TCP:
      proto = "tcp";
      break;
    case v1::PORT_PROTOCOL_UDP:
      proto = "udp";
      break;
    default:
      proto = absl::StrCat("unknown(", static_cast<int>(p.protocol()), ")");
      break;
  }
  std::string addr(kDefaultHostAddress);
  if (!p.host_address().empty()) {
    addr = p.host_address();
  }
  return absl::StrCat(proto, ":",
                      absl::StrContains(addr, ':') ? absl::StrCat("[", addr, "]") : addr, ":",
                      p.host_port(), ":", p.guest_port());
}

absl::StatusOr<uint64_t> ParseMemoryMib(absl::string_view flag, absl::string_view text) {
  PML_ASSIGN_OR_RETURN(uint64_t mib, ParseSizeMib(flag, text, 1, "MiB"));
  if (mib == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", text.substr(0, 64), "\": want more than 0"));
  }
  return mib;
}

absl::StatusOr<uint32_t> ParseDiskGib(absl::string_view flag, absl::string_view text) {
  PML_ASSIGN_OR_RETURN(uint64_t mib, ParseSizeMib(flag, text, 1024, "GiB"));
  if (mib % 1024 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", text.substr(0, 64), "\": not a whole number of GiB"));
  }
  if (mib / 1024 > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", text.substr(0, 64), "\": too large"));
  }
  return static_cast<uint32_t>(mib / 1024);
}

absl::StatusOr<uint32_t> ParseStopTimeoutSeconds(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout \"", text.substr(0, 64), "\": ", why));
  };
  uint64_t seconds = 0;
  if (!text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) {
    if (text.size() > 19 || !absl::SimpleAtoi(text, &seconds)) {
      return bad("too large");
    }
  } else {
    absl::Duration d;
    if (!absl::ParseDuration(text, &d)) {
      return bad("want a duration (30s, 2m, 1m30s) or a number of seconds");
    }
    if (d < absl::ZeroDuration()) {
      return bad("negative");
    }
    if (d == absl::InfiniteDuration()) {
      return bad("too large");
    }
    if (absl::Trunc(d, absl::Seconds(1)) != d) {
      return bad("want whole seconds");
    }
    seconds = static_cast<uint64_t>(absl::ToInt64Seconds(d));
  }
  if (seconds > std::numeric_limits<uint32_t>::max()) {
    return bad("too large");
  }
  return static_cast<uint32_t>(seconds);
}

std::string VmStateName(v1::VmState state) {
  return ShortEnumName(*v1::VmState_descriptor(), state, kVmStatePrefix);
}
std::string GpuStateName(v1::GpuState state) {
  return ShortEnumName(*v1::GpuState_descriptor(), state, kGpuStatePrefix);
}
std::string VmEventTypeName(v1::VmEventType type) {
  return ShortEnumName(*v1::VmEventType_descriptor(), type, kEventTypePrefix);
}
std::string TeeModeName(TeeMode mode) {
  return ShortEnumName(*common::v1::TeeMode_descriptor(), mode, kTeeModePrefix);
}

absl::StatusOr<v1::VmState> ParseVmState(absl::string_view name) {
  PML_ASSIGN_OR_RETURN(int n,
                       ParseEnumName(*v1::VmState_descriptor(), kVmStatePrefix, "--state", name));
  return static_cast<v1::VmState>(n);
}

absl::StatusOr<v1::GpuState> ParseGpuState(absl::string_view name) {
  PML_ASSIGN_OR_RETURN(int n,
                       ParseEnumName(*v1::GpuState_descriptor(), kGpuStatePrefix, "--state", name));
  return static_cast<v1::GpuState>(n);
}

absl::StatusOr<TeeMode> ParseTeeMode(absl::string_view name) {
  PML_ASSIGN_OR_RETURN(
      int n, ParseEnumName(*common::v1::TeeMode_descriptor(), kTeeModePrefix, "--tee", name));
  return static_cast<TeeMode>(n);
}

std::string TeeModeDescription(TeeMode mode) {
  if (mode == common::v1::TEE_MODE_NONE) {
    return "none (no TEE: the guest uses the SIMULATED TDX; development only)";
  }
  return TeeModeName(mode);
}

// ---- app-compose.json

absl::StatusOr<std::string> WrapAppCompose(ComposeRunner runner, absl::string_view name,
                                           absl::string_view script, bool kms_enabled) {
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError("app name: not valid UTF-8");
  }
  if (!IsValidUtf8(script)) {
    return absl::InvalidArgumentError(runner == ComposeRunner::kBash
                                          ? "bash script: not valid UTF-8"
                                          : "docker-compose file: not valid UTF-8");
  }
  // nlohmann::json keeps object keys in a std::map: dump() writes them sorted (byte order, which
  // is the code point order dstack's sorted-key JSON uses), compact, and UTF-8 unescaped.
  const std::string name_text(name);
  const std::string script_text(script);
  nlohmann::json j = nlohmann::json::object();
  j["manifest_version"] = 2;
  j["name"] = name_text;
  if (runner == ComposeRunner::kBash) {
    j["runner"] = "bash";
    j["bash_script"] = script_text;
  } else {
    j["runner"] = "docker-compose";
    j["docker_compose_file"] = script_text;
  }
  j["kms_enabled"] = kms_enabled;
  j["gateway_enabled"] = false;
  j["public_logs"] = true;
  j["public_sysinfo"] = true;
  j["public_tcbinfo"] = true;
  j["local_key_provider_enabled"] = false;
  j["allowed_envs"] = nlohmann::json::array();
  j["no_instance_id"] = false;
  j["secure_time"] = false;
  return j.dump();
}

absl::StatusOr<std::string> LoadAppCompose(const ComposeFlags& flags, absl::string_view name,
                                           bool kms_enabled) {
  const int given = static_cast<int>(!flags.compose_file.empty()) +
                    static_cast<int>(!flags.app_compose_file.empty()) +
                    static_cast<int>(!flags.bash_script_file.empty());
  if (given != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(given == 0 ? "give one" : "give only one",
                     " of --compose FILE, --app-compose FILE and --bash-script FILE"));
  }
  std::string compose;
  if (!flags.app_compose_file.empty()) {
    PML_ASSIGN_OR_RETURN(
        compose, ReadFlagFile("--app-compose", flags.app_compose_file, kMaxAppComposeBytes));
    const nlohmann::json j = nlohmann::json::parse(compose, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--app-compose ", absl::string_view(flags.app_compose_file).substr(0, 64),
                       ": not a JSON object"));
    }
    return compose;
  }
  const bool bash = !flags.bash_script_file.empty();
  const absl::string_view flag = bash ? "--bash-script" : "--compose";
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " needs the app name (--name) to write app-compose.json"));
  }
  PML_ASSIGN_OR_RETURN(
      std::string script,
      ReadFlagFile(flag, bash ? flags.bash_script_file : flags.compose_file, kMaxAppComposeBytes));
  auto wrapped = WrapAppCompose(bash ? ComposeRunner::kBash : ComposeRunner::kDockerCompose, name,
                                script, kms_enabled);
  if (!wrapped.ok()) {
    return core::Annotate(wrapped.status(), flag);
  }
  if (wrapped->size() > kMaxAppComposeBytes) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": app-compose.json would be ",
                                                   wrapped->size(), " bytes, more than the VMM's ",
                                                   kMaxAppComposeBytes));
  }
  return wrapped;
}

v1::GetComposeHashResponse ComputeComposeHash(absl::string_view app_compose) {
  const crypto::Sha256Digest hash = crypto::Sha256(app_compose);
  static_assert(sizeof(hash) == kComposeHashBytes);
  std::string mrconfigid(kMrConfigIdBytes, '\0');
  mrconfigid[0] = static_cast<char>(kMrConfigIdV1);
  std::copy(hash.begin(), hash.end(), mrconfigid.begin() + 1);
  v1::GetComposeHashResponse out;
  out.set_compose_hash(core::ToString(hash));
  out.set_app_id(core::ToString(absl::MakeConstSpan(hash).subspan(0, kAppIdBytes)));
  out.set_mrconfigid(std::move(mrconfigid));
  return out;
}

std::string FormatComposeHash(const v1::GetComposeHashResponse& h) {
  return absl::StrCat("compose hash: ", HexOrDash(h.compose_hash()), "\n",  //
                      "app id:       ", HexOrDash(h.app_id()), "\n",        //
                      "mrconfigid:   ", HexOrDash(h.mrconfigid()), "\n");
}

// ---- requests

absl::StatusOr<v1::CreateVmRequest> BuildCreateVmRequest(const CreateVmFlags& f) {
  v1::CreateVmRequest req;
  v1::VmSpec& spec = *req.mutable_spec();
  spec.set_name(f.name);
  spec.set_image(f.image);
  PML_ASSIGN_OR_RETURN(TeeMode mode, ParseTeeMode(f.tee));
  spec.set_tee_mode(mode);
  spec.set_vcpus(f.vcpus);
  PML_ASSIGN_OR_RETURN(uint64_t memory_mib, ParseMemoryMib("--memory", f.memory));
  spec.set_memory_mib(memory_mib);
  PML_ASSIGN_OR_RETURN(uint32_t disk_gib, ParseDiskGib("--disk", f.disk));
  spec.set_disk_size_gib(disk_gib);
  if (f.all_gpus && !f.gpus.empty()) {
    return absl::InvalidArgumentError("give --gpu SLOT... or --gpus all, not both");
  }
  spec.mutable_gpus()->set_all(f.all_gpus);
  for (const std::string& slot : f.gpus) {
    spec.mutable_gpus()->add_slots(slot);
  }
  for (const std::string& port : f.ports) {
    PML_ASSIGN_OR_RETURN(*spec.add_ports(), ParsePortSpec(port));
  }
  spec.set_hugepages(f.hugepages);
  spec.set_pin_numa(f.pin_numa);
  if (f.numa_node.has_value()) {
    spec.set_numa_node(*f.numa_node);
  }
  for (const std::string& url : f.kms_urls) {
    spec.add_kms_urls(url);
  }
  if (!f.app_id.empty()) {
    PML_ASSIGN_OR_RETURN(std::string app_id, ParseAppIdFlag("--app-id", f.app_id));
    spec.set_app_id(app_id);
  }
  if (f.request_id.empty() || f.request_id.size() > kMaxRequestIdChars) {
    return absl::InvalidArgumentError(absl::StrCat("--request-id: want 1-", kMaxRequestIdChars,
                                                   " characters, got ", f.request_id.size()));
  }
  req.set_request_id(f.request_id);
  req.set_start(f.start);
  // Files last: every flag error shows before any file is read.
  PML_ASSIGN_OR_RETURN(std::string compose, LoadAppCompose(f.compose, f.name, !f.kms_urls.empty()));
  spec.set_app_compose(std::move(compose));
  if (!f.encrypted_env_file.empty()) {
    PML_ASSIGN_OR_RETURN(std::string env, ReadFlagFile("--encrypted-env-file", f.encrypted_env_file,
                                                       kMaxEncryptedEnvBytes));
    spec.set_encrypted_env(std::move(env));
  }
  return req;
}

absl::StatusOr<v1::UpdateVmRequest> BuildUpdateVmRequest(absl::string_view vm_id,
                                                         const UpdateVmFlags& f,
                                                         const v1::Vm& current) {
  if (!f.ports.empty() && f.no_ports) {
    return absl::InvalidArgumentError("give --port or --no-ports, not both");
  }
  if (static_cast<int>(!f.gpus.empty()) + static_cast<int>(f.all_gpus) +
          static_cast<int>(f.no_gpus) >
      1) {
    return absl::InvalidArgumentError("give one of --gpu SLOT..., --gpus all and --no-gpus");
  }
  if (!f.kms_urls.empty() && f.no_kms_urls) {
    return absl::InvalidArgumentError("give --kms-url or --no-kms-urls, not both");
  }
  if (f.numa_node.has_value() && f.no_numa_node) {
    return absl::InvalidArgumentError("give --numa-node or --no-numa-node, not both");
  }
  v1::UpdateVmRequest req;
  req.mutable_vm_id()->assign(vm_id.data(), vm_id.size());
  v1::VmSpec& spec = *req.mutable_spec();
  google::protobuf::FieldMask& mask = *req.mutable_update_mask();
  // Paths in VmSpec field order.
  if (f.compose.Given()) {
    bool kms_enabled = !current.spec().kms_urls().empty();
    if (!f.kms_urls.empty() || f.no_kms_urls) {
      kms_enabled = !f.kms_urls.empty();
    }
    PML_ASSIGN_OR_RETURN(std::string compose,
                         LoadAppCompose(f.compose, current.spec().name(), kms_enabled));
    spec.set_app_compose(std::move(compose));
    mask.add_paths("app_compose");
  }
  if (f.vcpus.has_value()) {
    spec.set_vcpus(*f.vcpus);
    mask.add_paths("vcpus");
  }
  if (f.memory.has_value()) {
    PML_ASSIGN_OR_RETURN(uint64_t mib, ParseMemoryMib("--memory", *f.memory));
    spec.set_memory_mib(mib);
    mask.add_paths("memory_mib");
  }
  if (f.disk.has_value()) {
    PML_ASSIGN_OR_RETURN(uint32_t gib, ParseDiskGib("--disk", *f.disk));
    spec.set_disk_size_gib(gib);
    mask.add_paths("disk_size_gib");
  }
  if (!f.gpus.empty() || f.all_gpus || f.no_gpus) {
    v1::GpuSelection& gpus = *spec.mutable_gpus();
    gpus.set_all(f.all_gpus);
    for (const std::string& slot : f.gpus) {
      gpus.add_slots(slot);
    }
    mask.add_paths("gpus");
  }
  if (!f.ports.empty() || f.no_ports) {
    for (const std::string& port : f.ports) {
      PML_ASSIGN_OR_RETURN(*spec.add_ports(), ParsePortSpec(port));
    }
    mask.add_paths("ports");
  }
  if (f.hugepages.has_value()) {
    spec.set_hugepages(*f.hugepages);
    mask.add_paths("hugepages");
  }
  if (f.pin_numa.has_value()) {
    spec.set_pin_numa(*f.pin_numa);
    mask.add_paths("pin_numa");
  }
  if (f.numa_node.has_value() || f.no_numa_node) {
    if (f.numa_node.has_value()) {
      spec.set_numa_node(*f.numa_node);
    }
    mask.add_paths("numa_node");
  }
  if (!f.kms_urls.empty() || f.no_kms_urls) {
    for (const std::string& url : f.kms_urls) {
      spec.add_kms_urls(url);
    }
    mask.add_paths("kms_urls");
  }
  if (!f.encrypted_env_file.empty()) {
    PML_ASSIGN_OR_RETURN(std::string env, ReadFlagFile("--encrypted-env-file", f.encrypted_env_file,
                                                       kMaxEncryptedEnvBytes));
    spec.set_encrypted_env(std::move(env));
    mask.add_paths("encrypted_env");
  }
  if (mask.paths().empty()) {
    return absl::InvalidArgumentError(
        "nothing to update: give at least one of --compose/--app-compose/--bash-script, "
        "--vcpus, --memory, --disk, --gpu/--gpus/--no-gpus, --port/--no-ports, "
        "--[no-]hugepages, --[no-]pin-numa, --numa-node/--no-numa-node, "
        "--kms-url/--no-kms-urls, --encrypted-env-file");
  }
  return req;
}

std::string NewRequestId() {
  std::vector<uint8_t> b = crypto::RandomBytes(16);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // RFC 9562 §5.4: version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // variant 10
  const std::string h = core::HexEncode(b);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                      h.substr(16, 4), "-", h.substr(20));
}

// ---- VM arguments

bool LooksLikeVmId(absl::string_view ref) {
  if (ref.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? ref[i] != '-' : !absl::ascii_isxdigit(ref[i])) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> PickVmByName(absl::string_view name,
                                         const std::vector<v1::Vm>& candidates) {
  std::vector<std::string> ids;
  for (const v1::Vm& vm : candidates) {
    if (vm.name() == name) {
      ids.push_back(vm.id());
    }
  }
  if (ids.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no VM is named \"", name.substr(0, 64), "\" (and it is not a VM id)"));
  }
  if (ids.size() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(ids.size(), " VMs are named \"",
                                                      name.substr(0, 64), "\" (",
                                                      absl::StrJoin(ids, ", "), "): give the id"));
  }
  return ids.front();
}

// ---- output

std::string FormatGpuTable(const v1::ListGpusResponse& resp) {
  if (resp.gpus().empty()) {
    return "no NVIDIA GPUs or NVSwitches found\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"SLOT", "KIND", "NAME", "NUMA", "IOMMU", "DRIVER", "STATE", "VM/REASON"});
  for (const v1::Gpu& g : resp.gpus()) {
    std::string kind = "?";
    if (g.device_kind() == common::v1::GPU_DEVICE_KIND_GPU) {
      kind = "gpu";
    } else if (g.device_kind() == common::v1::GPU_DEVICE_KIND_NVSWITCH) {
      kind = "nvswitch";
    }
    std::string holder = "-";
    if (g.state() == v1::GPU_STATE_CLAIMED) {
      holder = g.vm_name().empty() ? OrDash(g.vm_id()) : g.vm_name();
    } else if (g.state() == v1::GPU_STATE_UNUSABLE) {
      holder = OrDash(g.unusable_reason());
    }
    rows.push_back({g.slot(), kind, OrDash(g.name()),
                    g.numa_node() < 0 ? "-" : absl::StrCat(g.numa_node()),
                    g.iommu_group() < 0 ? "-" : absl::StrCat(g.iommu_group()), OrDash(g.driver()),
                    GpuStateName(g.state()), holder});
  }
  return FormatTable(rows, "");
}

std::string FormatImageTable(const v1::ListImagesResponse& resp) {
  if (resp.images().empty()) {
    return "no images in the VMM's image directory\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NAME", "VERSION", "VARIANT", "TDX", "OS IMAGE HASH", "STATUS"});
  for (const v1::Image& im : resp.images()) {
    std::string variant = "-";
    if (im.variant() == common::v1::IMAGE_VARIANT_PRODUCTION) {
      variant = "production";
    } else if (im.variant() == common::v1::IMAGE_VARIANT_DEVELOPMENT) {
      variant = "development";
    }
    rows.push_back({im.name(), OrDash(im.version()), variant, YesNo(im.tdx_capable()),
                    HexOrDash(im.os_image_hash()), im.error().empty() ? "ok" : im.error()});
  }
  return FormatTable(rows, "");
}

std::string FormatHostInfo(const v1::GetHostInfoResponse& h) {
  std::string out = absl::StrCat(
      "hostname:        ", OrDash(h.hostname()), "\n",  //
      "pml-vmm:         ", OrDash(h.version()), "\n",   //
      "libvirt:         ", OrDash(h.libvirt_version()), " (", OrDash(h.libvirt_uri()), ")\n",
      "qemu:            ", OrDash(h.qemu_version()), "\n",  //
      "kvm:             ", h.kvm_available() ? "yes" : "NO (guests run under TCG emulation: slow)",
      "\n",  //
      "tdx:             ",
      h.tdx_supported() ? std::string("yes")
                        : absl::StrCat("no (", OrDash(h.tdx_unsupported_reason()), ")"),
      "\n", "vcpus:           ", h.allocated_vcpus(), " allocated of ", h.max_vcpus(),
      " allowed (host: ", h.host_cpus(), " logical CPUs)\n",  //
      "memory:          ", h.allocated_memory_mib(), " MiB allocated of ", h.max_memory_mib(),
      " MiB allowed (host: ", h.host_memory_mib(), " MiB)\n",  //
      "hugepage size:   ", h.hugepage_size_kib(), " KiB\n",    //
      "host ports:      ",
      h.allowed_port_ranges().empty() ? std::string("(none allowed)")
                                      : absl::StrJoin(h.allowed_port_ranges(), ", "),
      "\n");
  if (h.numa_nodes().empty()) {
    absl::StrAppend(&out, "numa nodes:      (none reported)\n");
    return out;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NODE", "CPUS", "MEMORY MIB", "FREE HUGEPAGES"});
  for (const v1::NumaNode& n : h.numa_nodes()) {
    rows.push_back({absl::StrCat(n.id()), OrDash(n.cpus()), absl::StrCat(n.memory_mib()),
                    absl::StrCat(n.free_hugepages())});
  }
  absl::StrAppend(&out, "numa nodes:\n", FormatTable(rows, "  "));
  return out;
}

std::string FormatVm(const v1::Vm& vm) {
  const v1::VmSpec& s = vm.spec();
  const std::vector<std::string> gpus = VmGpus(vm);
  std::string gpu_text = gpus.empty() ? "none" : absl::StrJoin(gpus, ", ");
  if (gpus.empty() && s.gpus().all()) {
    gpu_text = "all";
  }
  std::string numa =
      absl::StrCat("hugepages ", YesNo(s.hugepages()), ", pinned ", YesNo(s.pin_numa()));
  if (s.has_numa_node()) {
    absl::StrAppend(&numa, ", node ", s.numa_node());
  }
  std::string domain = OrDash(vm.domain_name());
  if (!vm.domain_uuid().empty()) {
    absl::StrAppend(&domain, " (", vm.domain_uuid(), ")");
  }
  std::string out = absl::StrCat(
      "id:           ", OrDash(vm.id()), "\n",                    //
      "name:         ", OrDash(vm.name()), "\n",                  //
      "state:        ", VmStateName(vm.state()), "\n",            //
      "tee mode:     ", TeeModeDescription(vm.tee_mode()), "\n",  //
      "image:        ", OrDash(s.image()), "\n",                  //
      "vcpus:        ", s.vcpus(), "\n",                          //
      "memory:       ", s.memory_mib(), " MiB\n",                 //
      "data disk:    ",
      s.disk_size_gib() == 0 ? std::string("none") : absl::StrCat(s.disk_size_gib(), " GiB"),
      "\n",                              //
      "gpus:         ", gpu_text, "\n",  //
      "ports:        ", s.ports().empty() ? std::string("none") : PortList(s.ports()), "\n",
      "numa:         ", numa, "\n",  //
      "kms urls:     ",
      s.kms_urls().empty() ? std::string("none") : absl::StrJoin(s.kms_urls(), ", "), "\n",
      "compose hash: ", HexOrDash(vm.compose_hash()), "\n",  //
      "app id:       ", HexOrDash(vm.app_id()), "\n",        //
      "instance id:  ", HexOrDash(vm.instance_id()), "\n",   //
      "mrconfigid:   ",
      vm.mrconfigid().empty() ? std::string("- (set for TDX only)") : Hex(vm.mrconfigid()), "\n",
      "domain:       ", domain, "\n",                             //
      "created:      ", FormatTimestamp(vm.create_time()), "\n",  //
      "updated:      ", FormatTimestamp(vm.update_time()), "\n",  //
      "started:      ", FormatTimestamp(vm.start_time()), "\n",   //
      "request id:   ", OrDash(vm.request_id()), "\n");
  if (!vm.failure_reason().empty()) {
    absl::StrAppend(&out, "failure:      ", vm.failure_reason(), "\n");
  }
  return out;
}

std::string FormatVmTable(const std::vector<v1::Vm>& vms) {
  if (vms.empty()) {
    return "no VMs\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "NAME", "STATE", "TEE", "VCPUS", "MEMORY", "GPUS", "PORTS", "CREATED"});
  for (const v1::Vm& vm : vms) {
    rows.push_back({vm.id(), vm.name(), VmStateName(vm.state()), TeeModeName(vm.tee_mode()),
                    absl::StrCat(vm.spec().vcpus()), absl::StrCat(vm.spec().memory_mib(), "M"),
                    absl::StrCat(VmGpus(vm).size()),
                    vm.spec().ports().empty() ? "-" : PortList(vm.spec().ports()),
                    FormatTimestamp(vm.create_time())});
  }
  return FormatTable(rows, "");
}

std::string FormatVmEvent(const v1::VmEvent& e) {
  std::string state = VmStateName(e.vm().state());
  if (e.type() == v1::VM_EVENT_TYPE_STATE_CHANGED &&
      e.previous_state() != v1::VM_STATE_UNSPECIFIED) {
    absl::StrAppend(&state, " (was ", VmStateName(e.previous_state()), ")");
  }
  return absl::StrCat(FormatTimestamp(e.time()), " ", VmEventTypeName(e.type()), " ",
                      OrDash(e.vm().id()), " ", OrDash(e.vm().name()), " ", state, " ",
                      e.reason().empty() ? std::string("-")
                                         : absl::StrCat("\"", absl::CHexEscape(e.reason()), "\""));
}

std::string ProtoJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Only Any with an unknown type can fail, and these messages have none.
  PML_CHECK(google::protobuf::util::MessageToJsonString(message, &out, options).ok());
  if (pretty) {
    absl::StripTrailingAsciiWhitespace(&out);
    out += "\n";
  }
  return out;
}

}  // namespace pml::pmlctl
