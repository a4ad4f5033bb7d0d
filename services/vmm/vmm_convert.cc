#include "services/vmm/vmm_convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace pml::vmm {
namespace {

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t us = absl::ToUnixMicros(t);
  out->set_seconds(us / 1000000);
  out->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
}

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

}  // namespace

absl::StatusOr<VmSpec> SpecFromProto(const v1::VmSpec& p) {
  VmSpec s;
  s.name = p.name();
  s.image = p.image();
  s.app_compose = p.app_compose();
  s.vcpus = p.vcpus();
  s.memory_mib = p.memory_mib();
  s.disk_size_gib = p.disk_size_gib();
  s.gpu_slots.assign(p.gpus().slots().begin(), p.gpus().slots().end());
  s.all_gpus = p.gpus().all();
  for (int i = 0; i < p.ports_size(); ++i) {
    const auto& f = p.ports(i);
    PortForward pf;
    switch (f.protocol()) {
      case v1::PORT_PROTOCOL_TCP: pf.protocol = PortProtocol::kTcp; break;
      case v1::PORT_PROTOCOL_UDP: pf.protocol = PortProtocol::kUdp; break;
      default: pf.protocol = PortProtocol::kUnspecified; break;
    }
    if (f.host_port() > 65535 || f.guest_port() > 65535)
      return absl::InvalidArgumentError(absl::StrCat("spec.ports[", i, "]: ports are 1-65535"));
    pf.host_address = f.host_address().empty() ? "127.0.0.1" : f.host_address();
    pf.host_port = static_cast<uint16_t>(f.host_port());
    pf.guest_port = static_cast<uint16_t>(f.guest_port());
    s.ports.push_back(std::move(pf));
  }
  switch (p.tee_mode()) {
    case common::v1::TEE_MODE_TDX: s.tee_mode = TeeMode::kTdx; break;
    case common::v1::TEE_MODE_NONE: s.tee_mode = TeeMode::kNone; break;
    default: s.tee_mode = TeeMode::kUnspecified; break;
  }
  s.hugepages = p.hugepages();
  s.pin_numa = p.pin_numa();
  if (p.has_numa_node()) s.numa_node = p.numa_node();
  s.kms_urls.assign(p.kms_urls().begin(), p.kms_urls().end());
  s.encrypted_env.assign(p.encrypted_env().begin(), p.encrypted_env().end());
  s.app_id.assign(p.app_id().begin(), p.app_id().end());
  return s;
}

void SpecToProto(const VmSpec& s, v1::VmSpec* p) {
  p->set_name(s.name);
  p->set_image(s.image);
  p->set_app_compose(s.app_compose);
  p->set_vcpus(s.vcpus);
  p->set_memory_mib(s.memory_mib);
  p->set_disk_size_gib(s.disk_size_gib);
  for (const auto& slot : s.gpu_slots) p->mutable_gpus()->add_slots(slot);
  p->mutable_gpus()->set_all(s.all_gpus);
  for (const auto& f : s.ports) {
    auto* o = p->add_ports();
    o->set_protocol(f.protocol == PortProtocol::kUdp ? v1::PORT_PROTOCOL_UDP : v1::PORT_PROTOCOL_TCP);
    o->set_host_address(f.host_address);
    o->set_host_port(f.host_port);
    o->set_guest_port(f.guest_port);
  }
  p->set_tee_mode(s.tee_mode == TeeMode::kTdx ? common::v1::TEE_MODE_TDX : common::v1::TEE_MODE_NONE);
  p->set_hugepages(s.hugepages);
  p->set_pin_numa(s.pin_numa);
  if (s.numa_node) p->set_numa_node(*s.numa_node);
  for (const auto& u : s.kms_urls) p->add_kms_urls(u);
  p->set_encrypted_env(Bytes(s.encrypted_env));
  p->set_app_id(Bytes(s.app_id));
}

void VmToProto(const VmRecord& vm, v1::Vm* p) {
  p->set_id(vm.id);
  p->set_name(vm.name);
  p->set_state(static_cast<v1::VmState>(vm.state));
  p->set_tee_mode(vm.spec.tee_mode == TeeMode::kTdx ? common::v1::TEE_MODE_TDX
                                                    : common::v1::TEE_MODE_NONE);
  SpecToProto(vm.spec, p->mutable_spec());
  for (const auto& s : vm.spec.gpu_slots) p->add_gpu_slots(s);
  SetTime(vm.create_time, p->mutable_create_time());
  SetTime(vm.update_time, p->mutable_update_time());
  if (vm.start_time) SetTime(*vm.start_time, p->mutable_start_time());
  p->set_app_id(Bytes(vm.app_id));
  p->set_instance_id(Bytes(vm.instance_id));
  p->set_compose_hash(Bytes(vm.compose_hash));
  p->set_mrconfigid(Bytes(vm.mrconfigid));
  p->set_domain_name(vm.domain_name);
  p->set_domain_uuid(vm.domain_uuid);
  p->set_failure_reason(vm.failure_reason);
  p->set_request_id(vm.request_id);
}

v1::GpuState GpuStateOf(const GpuView& g) {
  if (!g.vm_id.empty()) return v1::GPU_STATE_CLAIMED;
  if (!g.device.unusable_reason.empty()) return v1::GPU_STATE_UNUSABLE;
  return v1::GPU_STATE_FREE;
}

void GpuToProto(const GpuView& g, v1::Gpu* p) {
  const GpuDevice& d = g.device;
  p->set_slot(d.slot);
  p->set_device_kind(static_cast<common::v1::GpuDeviceKind>(d.kind));
  p->set_vendor_id(d.vendor_id);
  p->set_device_id(d.device_id);
  p->set_name(d.name);
  p->set_arch(static_cast<common::v1::GpuArch>(d.arch));
  p->set_numa_node(d.numa_node);
  p->set_iommu_group(d.iommu_group);
  p->set_driver(d.driver);
  p->set_vfio_bound(d.vfio_bound);
  p->set_state(GpuStateOf(g));
  p->set_unusable_reason(d.unusable_reason);
  p->set_vm_id(g.vm_id);
  p->set_vm_name(g.vm_name);
}

void ImageToProto(const ImageInfo& i, v1::Image* p) {
  p->set_name(i.name);
  p->set_version(i.version);
  p->set_variant(static_cast<common::v1::ImageVariant>(i.variant));
  p->set_cmdline(i.cmdline);
  for (const auto& f : i.files) {
    auto* o = p->add_files();
    o->set_name(f.name);
    o->set_sha256(std::string(f.sha256.begin(), f.sha256.end()));
    o->set_size_bytes(f.size_bytes);
  }
  if (i.error.empty()) p->set_os_image_hash(std::string(i.os_image_hash.begin(), i.os_image_hash.end()));
  if (!i.mrtd.empty()) {
    auto* m = p->mutable_measurements();
    m->set_mrtd(Bytes(i.mrtd));
    m->set_rtmr0(Bytes(i.rtmr0));
    m->set_rtmr1(Bytes(i.rtmr1));
    m->set_rtmr2(Bytes(i.rtmr2));
  }
  p->set_tdx_capable(i.tdx_capable);
  p->set_error(i.error);
}

void HostToProto(const HostInfo& h, absl::string_view version, v1::GetHostInfoResponse* p) {
  p->set_hostname(h.caps.hostname);
  p->set_libvirt_uri(h.caps.libvirt_uri);
  p->set_libvirt_version(h.caps.libvirt_version);
  p->set_qemu_version(h.caps.hypervisor_version);
  p->set_tdx_supported(h.caps.tdx_supported);
  p->set_tdx_unsupported_reason(h.caps.tdx_unsupported_reason);
  p->set_kvm_available(h.caps.kvm_available && h.virt_type == "kvm");
  p->set_host_cpus(h.host_cpus);
  p->set_host_memory_mib(h.host_memory_mib);
  for (const auto& n : h.numa_nodes) {
    auto* o = p->add_numa_nodes();
    o->set_id(n.id);
    o->set_cpus(n.cpus);
    o->set_memory_mib(n.memory_mib);
    o->set_free_hugepages(n.free_hugepages);
  }
  p->set_hugepage_size_kib(h.hugepage_size_kib);
  p->set_max_vcpus(h.max_vcpus);
  p->set_max_memory_mib(h.max_memory_mib);
  p->set_allocated_vcpus(h.allocated_vcpus);
  p->set_allocated_memory_mib(h.allocated_memory_mib);
  for (const auto& r : h.allowed_ports) p->add_allowed_port_ranges(PortRangeText(r));
  p->set_version(std::string(version));
}

void ChangeToProto(const VmChange& c, v1::VmEvent* p) {
  p->set_sequence(c.sequence);
  SetTime(c.time, p->mutable_time());
  p->set_type(static_cast<v1::VmEventType>(c.kind));
  VmToProto(c.vm, p->mutable_vm());
  if (c.kind == VmEventKind::kStateChanged)
    p->set_previous_state(static_cast<v1::VmState>(c.previous_state));
  p->set_reason(c.reason);
}

}  // namespace pml::vmm
