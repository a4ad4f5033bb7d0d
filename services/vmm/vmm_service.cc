#include "services/vmm/vmm_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/rpc/status_convert.h"
#include "services/vmm/vm_spec.h"
#include "services/vmm/vmm_convert.h"

namespace pml::vmm {

using rpc::Role;

rpc::RoleTable VmmRoleTable() {
  return rpc::RoleTable{
      {"/pml.vmm.v1.Vmm/ListGpus", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/ListImages", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/GetHostInfo", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/CreateVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/StartVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/StopVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/RemoveVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/GetVm", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/ListVms", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/GetComposeHash", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/UpdateVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/WatchVms", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/StreamLogs", {{Role::kOperator, Role::kViewer}}},
  };
}

// ----------------------------------------------------------------------------------------------
// Metrics

struct VmmMetrics::Families {
  prometheus::Family<prometheus::Gauge>* vms = nullptr;
  prometheus::Family<prometheus::Gauge>* gpus = nullptr;
  prometheus::Family<prometheus::Histogram>* seconds = nullptr;
  prometheus::Family<prometheus::Counter>* failures = nullptr;
};

VmmMetrics::VmmMetrics(prometheus::Registry* registry) : f_(std::make_unique<Families>()) {
  if (registry == nullptr) return;
  f_->vms = &prometheus::BuildGauge()
                 .Name("pml_vmm_vms")
                 .Help("VMs known to this VMM, by state.")
                 .Register(*registry);
  f_->gpus = &prometheus::BuildGauge()
                  .Name("pml_vmm_gpus")
                  .Help("NVIDIA GPUs and NVSwitches on this host, by state (free, claimed, unusable).")
                  .Register(*registry);
  f_->seconds = &prometheus::BuildHistogram()
                     .Name("pml_vmm_operation_duration_seconds")
                     .Help("Time of VM operations (create, start, stop, remove, update), any outcome.")
                     .Register(*registry);
  f_->failures = &prometheus::BuildCounter()
                      .Name("pml_vmm_operation_failures_total")
                      .Help("VM operations that failed, by operation and gRPC code.")
                      .Register(*registry);
  for (int s = 1; s <= 8; ++s) f_->vms->Add({{"state", VmStateName(static_cast<VmState>(s))}});
  for (const char* s : {"free", "claimed", "unusable"}) f_->gpus->Add({{"state", s}});
}

VmmMetrics::~VmmMetrics() = default;

void VmmMetrics::OnOperation(absl::string_view op, absl::Duration took, absl::StatusCode code) {
  if (f_->seconds == nullptr) return;
  f_->seconds
      ->Add({{"operation", std::string(op)}},
            prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                    1, 2.5, 5, 10, 30, 60})
      .Observe(absl::ToDoubleSeconds(took));
  if (code != absl::StatusCode::kOk)
    f_->failures->Add({{"operation", std::string(op)}, {"code", absl::StatusCodeToString(code)}})
        .Increment();
}

void VmmMetrics::OnCounts(const std::map<VmState, int>& counts) {
  if (f_->vms == nullptr) return;
  for (const auto& [state, n] : counts) f_->vms->Add({{"state", VmStateName(state)}}).Set(n);
}

void VmmMetrics::OnGpus(const std::vector<GpuView>& gpus) {
  if (f_->gpus == nullptr) return;
  int free = 0, claimed = 0, unusable = 0;
  for (const auto& g : gpus) {
    switch (GpuStateOf(g)) {
      case v1::GPU_STATE_CLAIMED: ++claimed; break;
      case v1::GPU_STATE_UNUSABLE: ++unusable; break;
      default: ++free; break;
    }
  }
  f_->gpus->Add({{"state", "free"}}).Set(free);
  f_->gpus->Add({{"state", "claimed"}}).Set(claimed);
  f_->gpus->Add({{"state", "unusable"}}).Set(unusable);
}

// ----------------------------------------------------------------------------------------------
// Streams

namespace {

constexpr size_t kMaxWatchQueue = 10000;
constexpr size_t kLogChunkBytes = 64 << 10;

void Now(google::protobuf::Timestamp* t) {
  const int64_t us = absl::ToUnixMicros(absl::Now());
  t->set_seconds(us / 1000000);
  t->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
}

class WatchStream final : public grpc::ServerWriteReactor<v1::VmEvent> {
 public:
  WatchStream(VmManager& manager, const v1::WatchVmsRequest& req) : manager_(manager) {
    std::vector<std::string> ids(req.vm_ids().begin(), req.vm_ids().end());
    subscription_ = manager_.Subscribe(std::move(ids), req.send_initial(),
                                       [this](const VmChange& c) { Enqueue(c); });
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    NextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    manager_.Unsubscribe(subscription_);
    delete this;
  }

 private:
  void Enqueue(const VmChange& c) {
    absl::MutexLock lock(&mu_);
    if (finished_ || overflow_) return;
    if (queue_.size() >= kMaxWatchQueue) {
      overflow_ = true;  // finish once the queued events are written
      return;
    }
    queue_.emplace_back();
    ChangeToProto(c, &queue_.back());
    NextLocked();
  }
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (queue_.empty()) {
      if (overflow_)
        FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "watcher fell more than 10000 events behind; watch again"));
      return;
    }
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void FinishLocked(grpc::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    queue_.clear();
    Finish(std::move(st));
  }

  VmManager& manager_;
  uint64_t subscription_ = 0;
  absl::Mutex mu_;
  std::deque<v1::VmEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::VmEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool overflow_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

// Streams a console file from an offset; with follow, the service's pump polls it for more.
// Reads run on the executor; `pending_` counts them so that OnDone deletes only when none is
// left.
class LogStream final : public grpc::ServerWriteReactor<v1::LogChunk> {
 public:
  LogStream(VmmService& svc, std::string vm_id, std::string path, bool follow, uint64_t tail)
      : svc_(svc), vm_id_(std::move(vm_id)), path_(std::move(path)), follow_(follow) {
    struct stat st {};
    const uint64_t size = stat(path_.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    // Lock order: the service's follower set, then a stream's mu_ (the pump polls under both).
    if (follow_) svc_.AddFollower(this);
    absl::MutexLock lock(&mu_);
    offset_ = tail > 0 && tail < size ? size - tail : 0;
    ScheduleLocked();
  }
  // From the pump: read again if idle.
  void Poll() {
    absl::MutexLock lock(&mu_);
    ScheduleLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    ScheduleLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    if (follow_) svc_.RemoveFollower(this);  // the pump cannot reach it after this
    bool last;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      last = pending_ == 0;
    }
    if (last) delete this;
  }
  // Pump shutdown.
  void Stop() {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::OK);
  }

 private:
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || writing_ || finished_ || done_) return;
    reading_ = true;
    ++pending_;
    if (!svc_.executor().TrySubmit([this] { Read(); })) {
      reading_ = false;
      --pending_;  // executor full: the pump (follow) retries; otherwise give up
      if (!follow_) FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy"));
    }
  }

  void Read() {
    std::string buf(kLogChunkBytes, '\0');
    ssize_t n = -1;
    uint64_t off;
    {
      absl::MutexLock lock(&mu_);
      off = offset_;
    }
    const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
      close(fd);
    }
    bool vm_gone = false;
    if (n <= 0 && follow_) vm_gone = absl::IsNotFound(svc_.manager().GetVm(vm_id_).status());
    bool dead;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      --pending_;
      dead = done_ && pending_ == 0;
      if (!done_) Deliver(buf, n, off, vm_gone);
    }
    if (dead) delete this;
  }

  void Deliver(const std::string& buf, ssize_t n, uint64_t off, bool vm_gone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (n > 0) {
      current_.Clear();
      current_.set_data(buf.substr(0, static_cast<size_t>(n)));
      current_.set_offset(off);
      Now(current_.mutable_time());
      offset_ = off + static_cast<uint64_t>(n);
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (!follow_ || vm_gone) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    // Following: the pump polls again.
  }

  void FinishLocked(grpc::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(st));
  }

  VmmService& svc_;
  const std::string vm_id_;
  const std::string path_;
  const bool follow_;
  absl::Mutex mu_;
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  v1::LogChunk current_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
};

// ----------------------------------------------------------------------------------------------
// Service

VmmService::VmmService(const rpc::ServiceEnv& env, VmManager& manager, VmmMetrics* metrics,
                       std::string version)
    : env_(env), manager_(manager), metrics_(metrics), version_(std::move(version)) {
  pump_ = std::thread([this] { Pump(); });
}

VmmService::~VmmService() { Stop(); }

void VmmService::Stop() {
  {
    // Under mu_: a stream leaves the set (OnDone) before it is deleted, so none dies meanwhile.
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (LogStream* s : followers_) s->Stop();
  }
  if (pump_.joinable()) pump_.join();
}

void VmmService::AddFollower(LogStream* s) {
  absl::MutexLock lock(&mu_);
  followers_.insert(s);
}

void VmmService::RemoveFollower(LogStream* s) {
  absl::MutexLock lock(&mu_);
  followers_.erase(s);
}

void VmmService::Pump() {
  int tick = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(200))) return;
      for (LogStream* s : followers_) s->Poll();
    }
    if (metrics_ != nullptr && tick++ % 10 == 0) {  // GPU gauges every ~2 s
      auto gpus = manager_.ListGpus();
      if (gpus.ok()) metrics_->OnGpus(*gpus);
    }
  }
}

namespace {
std::string Actor(const std::optional<rpc::Identity>& id) {
  return id ? id->spiffe_id : std::string("local");
}
}  // namespace

grpc::ServerUnaryReactor* VmmService::ListGpus(grpc::CallbackServerContext* ctx,
                                               const v1::ListGpusRequest* req,
                                               v1::ListGpusResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/ListGpus", env_, [=, this](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(std::vector<GpuView> gpus, manager_.ListGpus());
    if (metrics_ != nullptr) metrics_->OnGpus(gpus);
    for (const auto& g : gpus) {
      if (req->state() != v1::GPU_STATE_UNSPECIFIED && GpuStateOf(g) != req->state()) continue;
      GpuToProto(g, resp->add_gpus());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::ListImages(grpc::CallbackServerContext* ctx,
                                                 const v1::ListImagesRequest*,
                                                 v1::ListImagesResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/ListImages", env_, [=, this](const auto&) -> absl::Status {
    for (const auto& i : manager_.ListImages()) ImageToProto(i, resp->add_images());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::GetHostInfo(grpc::CallbackServerContext* ctx,
                                                  const v1::GetHostInfoRequest*,
                                                  v1::GetHostInfoResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/GetHostInfo", env_, [=, this](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(HostInfo h, manager_.GetHostInfo());
    HostToProto(h, version_, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::CreateVm(grpc::CallbackServerContext* ctx,
                                               const v1::CreateVmRequest* req,
                                               v1::CreateVmResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/CreateVm", env_, [=, this](const auto& id) -> absl::Status {
    PML_ASSIGN_OR_RETURN(VmSpec spec, SpecFromProto(req->spec()));
    PML_ASSIGN_OR_RETURN(VmRecord vm,
                         manager_.CreateVm(spec, req->request_id(), Actor(id), req->start()));
    VmToProto(vm, resp->mutable_vm());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::StartVm(grpc::CallbackServerContext* ctx,
                                              const v1::StartVmRequest* req,
                                              v1::StartVmResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/StartVm", env_, [=, this](const auto& id) -> absl::Status {
    PML_ASSIGN_OR_RETURN(VmRecord vm, manager_.StartVm(req->vm_id(), Actor(id)));
    VmToProto(vm, resp->mutable_vm());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::StopVm(grpc::CallbackServerContext* ctx,
                                             const v1::StopVmRequest* req,
                                             v1::StopVmResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/StopVm", env_, [=, this](const auto& id) -> absl::Status {
    if (req->timeout_seconds() > 3600)
      return absl::InvalidArgumentError("timeout_seconds: at most 3600");
    PML_ASSIGN_OR_RETURN(VmRecord vm,
                         manager_.StopVm(req->vm_id(), req->force(),
                                         absl::Seconds(req->timeout_seconds()), Actor(id)));
    VmToProto(vm, resp->mutable_vm());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::RemoveVm(grpc::CallbackServerContext* ctx,
                                               const v1::RemoveVmRequest* req,
                                               v1::RemoveVmResponse*) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/RemoveVm", env_, [=, this](const auto& id) -> absl::Status {
    return manager_.RemoveVm(req->vm_id(), req->force(), Actor(id));
  });
}

grpc::ServerUnaryReactor* VmmService::GetVm(grpc::CallbackServerContext* ctx,
                                            const v1::GetVmRequest* req, v1::GetVmResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/GetVm", env_, [=, this](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(VmRecord vm, manager_.GetVm(req->vm_id()));
    VmToProto(vm, resp->mutable_vm());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::ListVms(grpc::CallbackServerContext* ctx,
                                              const v1::ListVmsRequest* req,
                                              v1::ListVmsResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/ListVms", env_, [=, this](const auto&) -> absl::Status {
    ListQuery q;
    q.page_size = req->page_size();
    q.page_token = req->page_token();
    for (int s : req->states()) {
      if (s < 1 || s > 8) return absl::InvalidArgumentError("states: unknown VM state");
      q.states.push_back(static_cast<VmState>(s));
    }
    q.name_filter = req->name_filter();
    PML_ASSIGN_OR_RETURN(ListResult r, manager_.ListVms(q));
    for (const auto& vm : r.vms) {
      v1::Vm* out = resp->add_vms();
      VmToProto(vm, out);
      // The list view leaves out the two large spec fields (up to 1 MiB and 64 KiB each), so a
      // page of 1000 VMs stays far below gRPC's message limit; GetVm returns them.
      out->mutable_spec()->clear_app_compose();
      out->mutable_spec()->clear_encrypted_env();
    }
    resp->set_next_page_token(r.next_page_token);
    resp->set_total_size(r.total_size);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::GetComposeHash(grpc::CallbackServerContext* ctx,
                                                     const v1::GetComposeHashRequest* req,
                                                     v1::GetComposeHashResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/GetComposeHash", env_, [=, this](const auto&) -> absl::Status {
    if (req->app_compose().empty()) return absl::InvalidArgumentError("app_compose: empty");
    if (req->app_compose().size() > kMaxAppComposeBytes)
      return absl::InvalidArgumentError("app_compose: larger than 1 MiB");
    const AppIdentity id = ComputeAppIdentity(req->app_compose(), {});
    resp->set_compose_hash(std::string(id.compose_hash.begin(), id.compose_hash.end()));
    resp->set_app_id(std::string(id.app_id.begin(), id.app_id.end()));
    resp->set_mrconfigid(std::string(id.mrconfigid.begin(), id.mrconfigid.end()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* VmmService::UpdateVm(grpc::CallbackServerContext* ctx,
                                               const v1::UpdateVmRequest* req,
                                               v1::UpdateVmResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.vmm.v1.Vmm/UpdateVm", env_, [=, this](const auto& id) -> absl::Status {
    PML_ASSIGN_OR_RETURN(VmSpec values, SpecFromProto(req->spec()));
    std::vector<std::string> mask(req->update_mask().paths().begin(),
                                  req->update_mask().paths().end());
    PML_ASSIGN_OR_RETURN(VmRecord vm, manager_.UpdateVm(req->vm_id(), values, mask, Actor(id)));
    VmToProto(vm, resp->mutable_vm());
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::VmEvent>* VmmService::WatchVms(grpc::CallbackServerContext* ctx,
                                                            const v1::WatchVmsRequest* req) {
  auto id = rpc::Authorize(*ctx, *env_.roles, "/pml.vmm.v1.Vmm/WatchVms");
  if (!id.ok()) return new rpc::FinishedWriteReactor<v1::VmEvent>(rpc::ToGrpcStatus(id.status()));
  return new WatchStream(manager_, *req);
}

grpc::ServerWriteReactor<v1::LogChunk>* VmmService::StreamLogs(grpc::CallbackServerContext* ctx,
                                                               const v1::StreamLogsRequest* req) {
  auto id = rpc::Authorize(*ctx, *env_.roles, "/pml.vmm.v1.Vmm/StreamLogs");
  if (!id.ok()) return new rpc::FinishedWriteReactor<v1::LogChunk>(rpc::ToGrpcStatus(id.status()));
  auto path = manager_.ConsoleLogPath(req->vm_id());
  if (!path.ok())
    return new rpc::FinishedWriteReactor<v1::LogChunk>(rpc::ToGrpcStatus(path.status()));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_)
      return new rpc::FinishedWriteReactor<v1::LogChunk>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "pml-vmm is shutting down"));
  }
  return new LogStream(*this, req->vm_id(), *path, req->follow(), req->tail_bytes());
}

}  // namespace pml::vmm
