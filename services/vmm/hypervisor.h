#pragma once
// The VMM's view of libvirt (STYLE.md §2: the libvirt handles stay in hypervisor.cc). One
// connection per Hypervisor; domain lifecycle events arrive on libvirt's event loop thread (one
// per process: libvirt's default event implementation is process-wide by design) and are handed
// to the handler set with SetEventHandler.
//
// Thread-safety: every method may be called from any thread (libvirt connections are
// thread-safe). Errors: kNotFound for an unknown domain (message names it); kFailedPrecondition
// for an operation that the domain's state forbids (libvirt's "domain is not running" / "already
// active"); kInvalidArgument for XML libvirt refuses (its message, which names the element);
// kUnavailable when the connection is lost; kInternal otherwise. Messages carry libvirt's text.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::vmm {

enum class DomainRunState { kShutoff, kRunning, kPaused, kShuttingDown, kCrashed, kOther };

struct DomainSummary {
  std::string name;
  std::string uuid;
  DomainRunState state = DomainRunState::kOther;
};

// A lifecycle change libvirt reported.
struct DomainEvent {
  std::string name;
  DomainRunState state = DomainRunState::kOther;  // state the event leaves the domain in
  std::string reason;                              // "libvirt: shutdown by guest", ...
};

struct HostCapabilities {
  std::string libvirt_uri;
  std::string libvirt_version;      // of the library, "9.0.0"
  std::string hypervisor_version;   // of the driver (QEMU), "7.2.0"; "" when unknown
  bool kvm_available = false;       // domain capabilities offer virt type kvm
  bool tdx_supported = false;       // domain capabilities offer launch security tdx
  std::string tdx_unsupported_reason;
  std::string hostname;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual const std::string& uri() const = 0;
  // Reads versions and domain capabilities (x86_64, q35). Never fails for a missing feature: it
  // says so in the result.
  virtual absl::StatusOr<HostCapabilities> Capabilities() = 0;
  // Defines (or redefines, same name and UUID) a persistent domain, with libvirt's schema
  // validation on. Returns its UUID.
  virtual absl::StatusOr<std::string> Define(absl::string_view xml) = 0;
  virtual absl::Status Start(absl::string_view name) = 0;
  // ACPI power button (graceful).
  virtual absl::Status Shutdown(absl::string_view name) = 0;
  // Forced power off; OK when already off.
  virtual absl::Status Destroy(absl::string_view name) = 0;
  // Removes the definition (and any NVRAM); OK when already gone.
  virtual absl::Status Undefine(absl::string_view name) = 0;
  virtual absl::StatusOr<DomainRunState> State(absl::string_view name) = 0;
  virtual absl::StatusOr<std::string> XmlDesc(absl::string_view name) = 0;
  // Every domain, defined or transient.
  virtual absl::StatusOr<std::vector<DomainSummary>> List() = 0;
  // Installs the lifecycle event handler (replacing any); it runs on the event loop thread and
  // must not call back into libvirt for long. Pass nullptr to stop receiving events.
  virtual void SetEventHandler(std::function<void(const DomainEvent&)> handler) = 0;
};

// Opens `uri` ("qemu:///system", "test:///default", "test:///path/node.xml"). kUnavailable when
// libvirt cannot be reached (message names the URI and libvirt's reason).
absl::StatusOr<std::unique_ptr<Hypervisor>> OpenLibvirt(absl::string_view uri);

const char* DomainRunStateName(DomainRunState state);

}  // namespace pml::vmm
