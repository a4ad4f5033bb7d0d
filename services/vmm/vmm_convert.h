#pragma once
// pml.vmm.v1 protos <-> the VMM's domain model (vm_model.h, vm_manager.h). Pure.

#include "absl/status/statusor.h"
#include "pml/vmm/v1/vmm.pb.h"
#include "services/vmm/vm_manager.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {

// kInvalidArgument naming the field for values the domain types cannot hold (ports > 65535,
// unknown enum numbers). The full validation is ValidateSpec's.
absl::StatusOr<VmSpec> SpecFromProto(const v1::VmSpec& proto);
void SpecToProto(const VmSpec& spec, v1::VmSpec* out);
void VmToProto(const VmRecord& vm, v1::Vm* out);
void GpuToProto(const GpuView& gpu, v1::Gpu* out);
void ImageToProto(const ImageInfo& image, v1::Image* out);
void HostToProto(const HostInfo& host, absl::string_view version, v1::GetHostInfoResponse* out);
void ChangeToProto(const VmChange& change, v1::VmEvent* out);
v1::GpuState GpuStateOf(const GpuView& gpu);

}  // namespace pml::vmm
