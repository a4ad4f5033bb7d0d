#include "services/vmm/hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace pml::vmm {
namespace {

template <auto kFree>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    if (p != nullptr) kFree(p);
  }
};
using ConnectPtr = std::unique_ptr<virConnect, CDeleter<virConnectClose>>;
using DomainPtr = std::unique_ptr<virDomain, CDeleter<virDomainFree>>;
struct FreeDeleter {
  void operator()(char* p) const { free(p); }  // NOLINT: libvirt strings are malloc'd
};
using CString = std::unique_ptr<char, FreeDeleter>;

// libvirt's last error on this thread as a Status with the most specific code.
absl::Status LastError(absl::string_view what) {
  virErrorPtr err = virGetLastError();
  const std::string msg = absl::StrCat(what, ": ", err != nullptr && err->message != nullptr
                                                       ? err->message
                                                       : "unknown libvirt error");
  const int code = err != nullptr ? err->code : VIR_ERR_INTERNAL_ERROR;
  virResetLastError();
  switch (code) {
    case VIR_ERR_NO_DOMAIN:
      return absl::NotFoundError(msg);
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_CONFIG_UNSUPPORTED:
      return absl::FailedPreconditionError(msg);
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_INVALID_ARG:
      return absl::InvalidArgumentError(msg);
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
    case VIR_ERR_SYSTEM_ERROR:
    case VIR_ERR_AUTH_FAILED:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

DomainRunState FromVirState(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
      return DomainRunState::kRunning;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return DomainRunState::kPaused;
    case VIR_DOMAIN_SHUTDOWN:
      return DomainRunState::kShuttingDown;
    case VIR_DOMAIN_SHUTOFF:
      return DomainRunState::kShutoff;
    case VIR_DOMAIN_CRASHED:
      return DomainRunState::kCrashed;
    default:
      return DomainRunState::kOther;
  }
}

std::string Version(unsigned long v) {  // NOLINT(runtime/int): libvirt's type
  return absl::StrCat(v / 1000000, ".", (v / 1000) % 1000, ".", v % 1000);
}

// libvirt's default event loop is process-wide: it is registered once, before the first
// connection opens, and run by one thread that lives as long as the process (the function-local
// static stops and joins it at exit).
class EventLoop {
 public:
  static void Ensure() {
    static EventLoop* loop = new EventLoop();  // NOLINT: process lifetime, see above
    (void)loop;
  }

 private:
  EventLoop() {
    // Errors come back as Statuses; stop libvirt from also printing each one to stderr.
    virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
    virEventRegisterDefaultImpl();
    thread_ = std::thread([] {
      while (true) {
        if (virEventRunDefaultImpl() < 0) virResetLastError();
      }
    });
    thread_.detach();  // runs for the process's life; libvirt offers no way to stop the loop
  }
  std::thread thread_;
};

// What the event callback reaches: shared with libvirt, which frees it with the registration.
struct EventSink {
  absl::Mutex mu;
  std::function<void(const DomainEvent&)> handler ABSL_GUARDED_BY(mu);
};

int OnLifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* sink = static_cast<std::shared_ptr<EventSink>*>(opaque);
  DomainEvent ev;
  const char* name = virDomainGetName(dom);
  ev.name = name != nullptr ? name : "";
  switch (event) {
    case VIR_DOMAIN_EVENT_STARTED:
      ev.state = DomainRunState::kRunning;
      ev.reason = "libvirt: started";
      break;
    case VIR_DOMAIN_EVENT_RESUMED:
      ev.state = DomainRunState::kRunning;
      ev.reason = "libvirt: resumed";
      break;
    case VIR_DOMAIN_EVENT_SUSPENDED:
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      ev.state = DomainRunState::kPaused;
      ev.reason = detail == VIR_DOMAIN_EVENT_SUSPENDED_IOERROR ? "libvirt: paused after an I/O error"
                                                                : "libvirt: paused";
      break;
    case VIR_DOMAIN_EVENT_STOPPED:
      ev.state = DomainRunState::kShutoff;
      switch (detail) {
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: ev.reason = "libvirt: shut down"; break;
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: ev.reason = "libvirt: powered off"; break;
        case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
          ev.state = DomainRunState::kCrashed;
          ev.reason = "libvirt: guest crashed";
          break;
        case VIR_DOMAIN_EVENT_STOPPED_FAILED:
          ev.state = DomainRunState::kCrashed;
          ev.reason = "libvirt: hypervisor failed";
          break;
        default: ev.reason = "libvirt: stopped"; break;
      }
      break;
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      if (detail == VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED) {
        ev.state = DomainRunState::kShuttingDown;
        ev.reason = "libvirt: shutdown by guest";
      } else {
        return 0;  // shutdown requested; STOPPED follows
      }
      break;
    case VIR_DOMAIN_EVENT_CRASHED:
      ev.state = DomainRunState::kCrashed;
      ev.reason = "libvirt: guest crashed";
      break;
    default:
      return 0;  // DEFINED/UNDEFINED: the VMM made them
  }
  absl::MutexLock lock(&(*sink)->mu);
  if ((*sink)->handler) (*sink)->handler(ev);
  return 0;
}

void FreeSink(void* opaque) { delete static_cast<std::shared_ptr<EventSink>*>(opaque); }

// Looks a domain up by name into `var`, returning kNotFound naming it.
#define PML_LOOKUP(var, name)                                                          \
  DomainPtr var(virDomainLookupByName(conn_.get(), std::string(name).c_str()));        \
  if (!var) return LastError(absl::StrCat("domain ", name))

class LibvirtHypervisor final : public Hypervisor {
 public:
  LibvirtHypervisor(std::string uri, ConnectPtr conn) : uri_(std::move(uri)), conn_(std::move(conn)) {
    sink_ = std::make_shared<EventSink>();
    callback_id_ = virConnectDomainEventRegisterAny(
        conn_.get(), nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle),
        new std::shared_ptr<EventSink>(sink_), FreeSink);
    if (callback_id_ < 0) virResetLastError();
  }
  ~LibvirtHypervisor() override {
    SetEventHandler(nullptr);
    if (callback_id_ >= 0) virConnectDomainEventDeregisterAny(conn_.get(), callback_id_);
  }

  const std::string& uri() const override { return uri_; }

  absl::StatusOr<HostCapabilities> Capabilities() override {
    HostCapabilities caps;
    caps.libvirt_uri = uri_;
    unsigned long v = 0;  // NOLINT(runtime/int)
    if (virConnectGetLibVersion(conn_.get(), &v) == 0) caps.libvirt_version = Version(v);
    else virResetLastError();
    unsigned long hv = 0;  // NOLINT(runtime/int)
    if (virConnectGetVersion(conn_.get(), &hv) == 0 && hv != 0) caps.hypervisor_version = Version(hv);
    else virResetLastError();
    CString host(virConnectGetHostname(conn_.get()));
    if (host) caps.hostname = host.get();
    else virResetLastError();

    CString kvm(virConnectGetDomainCapabilities(conn_.get(), nullptr, "x86_64", "q35", "kvm", 0));
    caps.kvm_available = kvm != nullptr;
    if (!kvm) virResetLastError();
    CString any(kvm ? nullptr
                    : virConnectGetDomainCapabilities(conn_.get(), nullptr, "x86_64", "q35",
                                                      "qemu", 0));
    if (!kvm && !any) {
      const absl::Status st = LastError("domain capabilities");
      caps.tdx_unsupported_reason = absl::StrCat("libvirt gives no domain capabilities (",
                                                 st.message(), ")");
      return caps;
    }
    const std::string domcaps = kvm ? kvm.get() : any.get();
    // libvirt ≥ 11.6 lists <launchSecurity supported='yes'><enum name='sectype'><value>tdx.
    const size_t ls = domcaps.find("<launchSecurity");
    const size_t ls_end = domcaps.find("</launchSecurity>", ls == std::string::npos ? 0 : ls);
    const std::string sec = ls == std::string::npos
                                ? ""
                                : domcaps.substr(ls, ls_end == std::string::npos ? std::string::npos
                                                                                 : ls_end - ls);
    if (!caps.kvm_available) {
      caps.tdx_unsupported_reason = "KVM is not offered by libvirt's domain capabilities (TDX needs KVM)";
    } else if (sec.empty() || absl::StrContains(sec, "supported='no'")) {
      caps.tdx_unsupported_reason = absl::StrCat(
          "libvirt ", caps.libvirt_version, " / QEMU ", caps.hypervisor_version,
          " offer no launch security (TDX needs libvirt 11.6+, QEMU 10.1+ and a TDX-enabled KVM)");
    } else if (!absl::StrContains(sec, "<value>tdx</value>")) {
      caps.tdx_unsupported_reason = "launch security is offered but not tdx (kvm_intel tdx=1 off?)";
    } else {
      caps.tdx_supported = true;
    }
    return caps;
  }

  absl::StatusOr<std::string> Define(absl::string_view xml) override {
    const std::string text(xml);
    DomainPtr dom(virDomainDefineXMLFlags(conn_.get(), text.c_str(), VIR_DOMAIN_DEFINE_VALIDATE));
    if (!dom) return LastError("define domain");
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    if (virDomainGetUUIDString(dom.get(), uuid) < 0) return LastError("domain uuid");
    return std::string(uuid);
  }

  absl::Status Start(absl::string_view name) override {
    PML_LOOKUP(dom, name);
    if (virDomainCreate(dom.get()) < 0) return LastError(absl::StrCat("start ", name));
    return absl::OkStatus();
  }

  absl::Status Shutdown(absl::string_view name) override {
    PML_LOOKUP(dom, name);
    if (virDomainShutdown(dom.get()) < 0) return LastError(absl::StrCat("shutdown ", name));
    return absl::OkStatus();
  }

  absl::Status Destroy(absl::string_view name) override {
    PML_LOOKUP(dom, name);
    if (virDomainIsActive(dom.get()) == 0) return absl::OkStatus();
    if (virDomainDestroy(dom.get()) < 0) {
      absl::Status st = LastError(absl::StrCat("power off ", name));
      if (virDomainIsActive(dom.get()) == 0) return absl::OkStatus();  // it stopped meanwhile
      return st;
    }
    return absl::OkStatus();
  }

  absl::Status Undefine(absl::string_view name) override {
    DomainPtr dom(virDomainLookupByName(conn_.get(), std::string(name).c_str()));
    if (!dom) {
      absl::Status st = LastError(absl::StrCat("domain ", name));
      return absl::IsNotFound(st) ? absl::OkStatus() : st;
    }
    if (virDomainUndefineFlags(dom.get(), VIR_DOMAIN_UNDEFINE_NVRAM |
                                              VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                              VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0) {
      virResetLastError();
      if (virDomainUndefine(dom.get()) < 0) return LastError(absl::StrCat("undefine ", name));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<DomainRunState> State(absl::string_view name) override {
    PML_LOOKUP(dom, name);
    int state = 0, reason = 0;
    if (virDomainGetState(dom.get(), &state, &reason, 0) < 0)
      return LastError(absl::StrCat("state of ", name));
    return FromVirState(state);
  }

  absl::StatusOr<std::string> XmlDesc(absl::string_view name) override {
    PML_LOOKUP(dom, name);
    CString xml(virDomainGetXMLDesc(dom.get(), 0));
    if (!xml) return LastError(absl::StrCat("XML of ", name));
    return std::string(xml.get());
  }

  absl::StatusOr<std::vector<DomainSummary>> List() override {
    virDomainPtr* doms = nullptr;
    const int n = virConnectListAllDomains(conn_.get(), &doms, 0);
    if (n < 0) return LastError("list domains");
    std::vector<DomainSummary> out;
    out.reserve(n);
    for (int i = 0; i < n; ++i) {
      DomainPtr dom(doms[i]);
      DomainSummary s;
      const char* name = virDomainGetName(dom.get());
      s.name = name != nullptr ? name : "";
      char uuid[VIR_UUID_STRING_BUFLEN] = {};
      if (virDomainGetUUIDString(dom.get(), uuid) == 0) s.uuid = uuid;
      int state = 0, reason = 0;
      if (virDomainGetState(dom.get(), &state, &reason, 0) == 0) s.state = FromVirState(state);
      else virResetLastError();
      out.push_back(std::move(s));
    }
    free(doms);  // NOLINT: libvirt's array
    return out;
  }

  void SetEventHandler(std::function<void(const DomainEvent&)> handler) override {
    absl::MutexLock lock(&sink_->mu);
    sink_->handler = std::move(handler);
  }

 private:
  std::string uri_;
  ConnectPtr conn_;
  std::shared_ptr<EventSink> sink_;
  int callback_id_ = -1;
};

#undef PML_LOOKUP

}  // namespace

const char* DomainRunStateName(DomainRunState state) {
  switch (state) {
    case DomainRunState::kShutoff: return "shut off";
    case DomainRunState::kRunning: return "running";
    case DomainRunState::kPaused: return "paused";
    case DomainRunState::kShuttingDown: return "shutting down";
    case DomainRunState::kCrashed: return "crashed";
    default: return "other";
  }
}

absl::StatusOr<std::unique_ptr<Hypervisor>> OpenLibvirt(absl::string_view uri) {
  EventLoop::Ensure();
  const std::string u(uri);
  ConnectPtr conn(virConnectOpen(u.c_str()));
  if (!conn) {
    absl::Status st = LastError(absl::StrCat("libvirt ", u));
    return absl::UnavailableError(st.message());
  }
  return std::unique_ptr<Hypervisor>(new LibvirtHypervisor(u, std::move(conn)));
}

}  // namespace pml::vmm
