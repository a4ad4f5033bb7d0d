// pml-vmm: see --help.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/metrics.h"
#include "lib/rpc/service_main.h"
#include "services/vmm/hypervisor.h"
#include "services/vmm/vm_manager.h"
#include "services/vmm/vm_store.h"
#include "services/vmm/vmm_service.h"

int main(int argc, char** argv) {
  CLI::App app(
      "pml-vmm: launches and supervises confidential VMs through libvirt on a GPU host.\n"
      "gRPC over mTLS (pml.vmm.v1.Vmm). VM state lives in SQLite under --state-dir; on start the\n"
      "VMM reconciles it with libvirt (domains it made carry its metadata), so a crash leaves no\n"
      "orphan domain and no GPU or port claimed by nothing.",
      "pml-vmm");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  pml::vmm::VmmOptions o;
  std::string uri = "qemu:///system";
  std::string store;
  std::vector<std::string> port_ranges;
  unsigned stop_timeout_s = 30;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.add_option("--libvirt-uri", uri,
                 "libvirt connection URI (qemu:///system in production; test:///default or "
                 "test:///PATH/node.xml for libvirt's test driver)")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir,
                 "directory for VM files (vms/<id>/: app config share, data disk, console log) "
                 "and, by default, the database")
      ->required();
  app.add_option("--images-dir", o.images_dir,
                 "directory with one subdirectory per guest image (kernel, initrd, metadata.json)")
      ->required();
  app.add_option("--store", store, "VM database (SQLite path); default <state-dir>/vmm.db");
  app.add_option("--sysfs-root", o.sysfs_root,
                 "where sysfs is mounted (GPU and NUMA inventory); tests point it at a fake tree")
      ->capture_default_str();
  app.add_option("--virt-type", o.virt_type,
                 "domain type: kvm, qemu (TCG, no hardware virtualization) or auto (kvm when "
                 "libvirt offers it)")
      ->check(CLI::IsMember({"auto", "kvm", "qemu"}))
      ->capture_default_str();
  app.add_option("--max-vcpus", o.max_vcpus, "vCPUs summed over all VMs; 0 = the host's CPUs")
      ->capture_default_str();
  app.add_option("--max-memory-mib", o.max_memory_mib,
                 "guest memory summed over all VMs, MiB; 0 = the host's memory")
      ->capture_default_str();
  app.add_option("--port-range", port_ranges,
                 "host ports VMs may forward, PROTO:FIRST-LAST (repeatable; default tcp:1024-65535 "
                 "and udp:1024-65535)");
  app.add_option("--qgs-socket", o.qgs_socket,
                 "TDX quote generation service socket given to TDX guests")
      ->capture_default_str();
  app.add_option("--qemu-img", o.qemu_img, "qemu-img binary for data disks")->capture_default_str();
  app.add_option("--stop-timeout-seconds", stop_timeout_s,
                 "default wait for a graceful StopVm before forcing the VM off")
      ->capture_default_str();
  app.add_option("--testing-crash-at", o.crash_at,
                 "TESTING ONLY: kill this process with SIGKILL inside CreateVm at after-claim or "
                 "after-define (proves restart reconciliation)")
      ->check(CLI::IsMember({"", "after-claim", "after-define"}))
      ->group("");
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);
  o.default_stop_timeout = absl::Seconds(stop_timeout_s);
  for (const auto& r : port_ranges) {
    auto range = pml::vmm::ParsePortRange(r);
    if (!range.ok()) {
      std::fprintf(stderr, "pml-vmm: error: --port-range: %s\n",
                   std::string(range.status().message()).c_str());
      return 2;
    }
    o.allowed_ports.push_back(*range);
  }
  if (store.empty()) store = o.state_dir + "/vmm.db";

  pml::rpc::ServiceMainOptions options{.component = "vmm", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::vmm::VmmRoleTable(),
      [&](const pml::rpc::ServiceEnv& env,
          pml::rpc::Metrics& metrics) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::vmm;  // NOLINT(google-build-using-namespace): main only
        PML_RETURN_IF_ERROR(pml::core::MakeDirs(o.state_dir, 0700));
        PML_ASSIGN_OR_RETURN(std::unique_ptr<Hypervisor> hv, OpenLibvirt(uri));
        PML_ASSIGN_OR_RETURN(std::unique_ptr<VmStore> db, VmStore::Open(store));
        auto observer = std::make_shared<VmmMetrics>(&metrics.registry());
        PML_ASSIGN_OR_RETURN(std::unique_ptr<VmManager> created,
                             VmManager::Create(o, std::move(hv), std::move(db), observer.get()));
        std::shared_ptr<VmManager> manager = std::move(created);
        const ReconcileReport& r = manager->reconcile_report();
        if (r.cleaned_up + r.lost + r.orphans_removed > 0)
          SPDLOG_WARN(
            "vmm_reconciled libvirt_uri={:?} adopted={} cleaned_up={} lost={} orphans_removed={}",
            uri, r.adopted, r.cleaned_up, r.lost, r.orphans_removed);
        pml::rpc::ServiceSet set;
        auto svc = std::make_shared<VmmService>(env, *manager, observer.get(), pml::rpc::Version());
        set.registered.push_back({svc.get(), v1::Vmm::service_full_name()});
        set.owned.push_back(svc);
        set.on_shutdown = [svc, manager, observer]() mutable {
          svc->Stop();
          manager.reset();
        };
        return set;
      });
}
