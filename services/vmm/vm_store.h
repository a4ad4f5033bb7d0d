#pragma once
// Durable VM state for pml-vmm: one SQLite database (lib/store) with the VMs and their exclusive
// GPU and host-port claims. Every multi-row change is one transaction, so a crash leaves either
// the old rows or the new ones. The VmManager keeps the authoritative in-memory copy and writes
// through this store before it acts on libvirt.
//
// Not thread-safe: the VmManager serializes calls. Errors are lib/store's (sql.h): kAlreadyExists
// when a name, request id, GPU or port is already taken; kUnavailable/kDataLoss from the database.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/store/sql.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {

struct PortKey {
  PortProtocol protocol = PortProtocol::kTcp;
  uint16_t host_port = 0;
  friend bool operator<(const PortKey& a, const PortKey& b) {
    return std::pair(a.protocol, a.host_port) < std::pair(b.protocol, b.host_port);
  }
  friend bool operator==(const PortKey&, const PortKey&) = default;
};

struct Claims {
  std::vector<std::pair<std::string, std::string>> gpus;  // slot, vm id
  std::vector<std::pair<PortKey, std::string>> ports;     // port, vm id
};

class VmStore {
 public:
  // Opens (creating) the database at `url` (a path or "sqlite:PATH"; lib/store's OpenSqlDb) and
  // its schema.
  static absl::StatusOr<std::unique_ptr<VmStore>> Open(absl::string_view url);

  // This store's identity (a UUID made on first use and kept): stamped into every domain the VMM
  // defines, so that reconciliation touches only its own domains when several VMMs (or test runs)
  // share one libvirtd.
  absl::StatusOr<std::string> InstanceId();

  // Every VM, ordered by create_seq. kDataLoss when a row does not parse.
  absl::StatusOr<std::vector<VmRecord>> LoadAll();
  absl::StatusOr<Claims> LoadClaims();

  // Inserts the VM and claims `slots` and `ports` for it, in one transaction.
  absl::Status Insert(const VmRecord& vm, const std::vector<std::string>& slots,
                      const std::vector<PortKey>& ports);
  // Writes every mutable column of `vm` (state, spec, times, ids, domain, failure reason).
  absl::Status Update(const VmRecord& vm);
  // Updates the VM and replaces its claims, in one transaction.
  absl::Status UpdateWithClaims(const VmRecord& vm, const std::vector<std::string>& slots,
                                const std::vector<PortKey>& ports);
  // Drops the VM's claims (the VM row stays).
  absl::Status ReleaseClaims(absl::string_view vm_id);
  // Deletes the VM and its claims.
  absl::Status Delete(absl::string_view vm_id);

 private:
  explicit VmStore(std::unique_ptr<store::SqlDb> db) : db_(std::move(db)) {}
  absl::Status WriteClaims(absl::string_view vm_id, const std::vector<std::string>& slots,
                           const std::vector<PortKey>& ports);
  std::unique_ptr<store::SqlDb> db_;
};

}  // namespace pml::vmm
