#include "lib/tee/nvml_collector.h"

#include <dlfcn.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/status.h"

namespace pml::tee {

// NVML ABI as documented by NVIDIA (nvml.h is not a Debian package; these are the documented
// types and sizes, see shared/specs/gpu-evidence-verification.md §1).
namespace {

using nvmlReturn_t = int;
using nvmlDevice_t = void*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlErrorNoPermission = 4;
constexpr nvmlReturn_t kNvmlErrorNotSupported = 3;

struct nvmlConfComputeSystemState_t {
  unsigned int environment;
  unsigned int ccFeature;
  unsigned int devToolsMode;
};
struct nvmlSystemConfComputeSettings_v1_t {
  unsigned int version;
  unsigned int environment;
  unsigned int ccFeature;
  unsigned int devToolsMode;
  unsigned int multiGpuMode;
};
constexpr unsigned int kConfComputeSettingsV1 =
    static_cast<unsigned int>(sizeof(nvmlSystemConfComputeSettings_v1_t)) | (1u << 24);
struct nvmlConfComputeGpuCertificate_t {
  unsigned int certChainSize;
  unsigned int attestationCertChainSize;
  unsigned char certChain[0x1000];
  unsigned char attestationCertChain[0x1400];
};
struct nvmlConfComputeGpuAttestationReport_t {
  unsigned int isCecAttestationReportPresent;
  unsigned int attestationReportSize;
  unsigned int cecAttestationReportSize;
  unsigned char nonce[0x20];
  unsigned char attestationReport[0x2000];
  unsigned char cecAttestationReport[0x1000];
};

constexpr size_t kNonceSize = 32;

}  // namespace

struct NvmlApi {
  nvmlReturn_t (*init)();
  nvmlReturn_t (*shutdown)();
  const char* (*error_string)(nvmlReturn_t);
  nvmlReturn_t (*get_cc_state)(nvmlConfComputeSystemState_t*);
  nvmlReturn_t (*get_cc_settings)(nvmlSystemConfComputeSettings_v1_t*);  // optional
  nvmlReturn_t (*set_ready)(unsigned int);                               // optional
  nvmlReturn_t (*get_ready)(unsigned int*);                              // optional
  nvmlReturn_t (*driver_version)(char*, unsigned int);
  nvmlReturn_t (*device_count)(unsigned int*);
  nvmlReturn_t (*device_by_index)(unsigned int, nvmlDevice_t*);
  nvmlReturn_t (*device_cert)(nvmlDevice_t, nvmlConfComputeGpuCertificate_t*);
  nvmlReturn_t (*device_report)(nvmlDevice_t, nvmlConfComputeGpuAttestationReport_t*);
  nvmlReturn_t (*vbios)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned int);
  nvmlReturn_t (*arch)(nvmlDevice_t, unsigned int*);
  nvmlReturn_t (*board_id)(nvmlDevice_t, unsigned int*);
};

std::string NvmlArchitectureName(uint32_t arch) {
  switch (arch) {
    case 2: return "Kepler";
    case 3: return "Maxwell";
    case 4: return "Pascal";
    case 5: return "Volta";
    case 6: return "Turing";
    case 7: return "Ampere";
    case 8: return "Ada";
    case 9: return "Hopper";
    case 10: return "Blackwell";
    default: return absl::StrCat("unknown(", arch, ")");
  }
}

absl::StatusOr<std::unique_ptr<NvmlCollector>> NvmlCollector::Open(const std::string& library) {
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    return absl::UnavailableError(absl::StrCat(
        "NVML is not available: cannot load ", library,
        " (no NVIDIA driver on this machine?): ", err != nullptr ? err : "unknown error"));
  }
  auto api = std::make_unique<NvmlApi>();
  std::vector<std::string> missing;
  auto sym = [&](auto& fn, const char* name, bool required) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(handle, name));
    if (fn == nullptr && required) missing.emplace_back(name);
  };
  sym(api->init, "nvmlInit_v2", true);
  sym(api->shutdown, "nvmlShutdown", true);
  sym(api->error_string, "nvmlErrorString", true);
  sym(api->get_cc_state, "nvmlSystemGetConfComputeState", true);
  sym(api->get_cc_settings, "nvmlSystemGetConfComputeSettings", false);
  sym(api->set_ready, "nvmlSystemSetConfComputeGpusReadyState", false);
  sym(api->get_ready, "nvmlSystemGetConfComputeGpusReadyState", false);
  sym(api->driver_version, "nvmlSystemGetDriverVersion", true);
  sym(api->device_count, "nvmlDeviceGetCount_v2", true);
  sym(api->device_by_index, "nvmlDeviceGetHandleByIndex_v2", true);
  sym(api->device_cert, "nvmlDeviceGetConfComputeGpuCertificate", true);
  sym(api->device_report, "nvmlDeviceGetConfComputeGpuAttestationReport", true);
  sym(api->vbios, "nvmlDeviceGetVbiosVersion", true);
  sym(api->uuid, "nvmlDeviceGetUUID", true);
  sym(api->arch, "nvmlDeviceGetArchitecture", true);
  sym(api->board_id, "nvmlDeviceGetBoardId", true);
  if (!missing.empty()) {
    ::dlclose(handle);
    return absl::UnavailableError(absl::StrCat(library, " lacks ", absl::StrJoin(missing, ", "),
                                               " (driver too old for confidential computing)"));
  }
  const nvmlReturn_t rc = api->init();
  if (rc != kNvmlSuccess) {
    const std::string msg = api->error_string(rc);
    ::dlclose(handle);
    return absl::UnavailableError(absl::StrCat("nvmlInit_v2 failed: ", msg));
  }
  return std::unique_ptr<NvmlCollector>(new NvmlCollector(handle, std::move(api)));
}

NvmlCollector::NvmlCollector(void* handle, std::unique_ptr<NvmlApi> api)
    : handle_(handle), api_(std::move(api)) {}

NvmlCollector::~NvmlCollector() {
  api_->shutdown();
  ::dlclose(handle_);
}

absl::Status NvmlCollector::Check(int rc, const char* what) {
  if (rc == kNvmlSuccess) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", api_->error_string(rc));
  if (rc == kNvmlErrorNoPermission) return absl::PermissionDeniedError(msg);
  if (rc == kNvmlErrorNotSupported) return absl::FailedPreconditionError(msg);
  return absl::UnavailableError(msg);
}

absl::StatusOr<NvmlSystemState> NvmlCollector::SystemState() {
  absl::MutexLock lock(&mu_);
  NvmlSystemState s;
  char version[96] = {};
  PML_RETURN_IF_ERROR(Check(api_->driver_version(version, sizeof(version)), "nvmlSystemGetDriverVersion"));
  s.driver_version = version;
  nvmlConfComputeSystemState_t st{};
  PML_RETURN_IF_ERROR(Check(api_->get_cc_state(&st), "nvmlSystemGetConfComputeState"));
  s.environment = st.environment;
  s.cc_feature = st.ccFeature;
  s.devtools_mode = st.devToolsMode;
  if (api_->get_cc_settings != nullptr) {
    nvmlSystemConfComputeSettings_v1_t settings{};
    settings.version = kConfComputeSettingsV1;
    if (api_->get_cc_settings(&settings) == kNvmlSuccess) {
      s.settings_available = true;
      s.multi_gpu_mode = settings.multiGpuMode;
    }
  }
  if (api_->get_ready != nullptr) {
    unsigned int ready = 0;
    if (api_->get_ready(&ready) == kNvmlSuccess) {
      s.ready = ready == 1;
      s.ready_known = true;
    }
  }
  return s;
}

absl::StatusOr<std::vector<NvmlGpuInfo>> NvmlCollector::ListGpus() {
  absl::MutexLock lock(&mu_);
  unsigned int count = 0;
  PML_RETURN_IF_ERROR(Check(api_->device_count(&count), "nvmlDeviceGetCount"));
  std::vector<NvmlGpuInfo> out;
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    PML_RETURN_IF_ERROR(Check(api_->device_by_index(i, &dev), "nvmlDeviceGetHandleByIndex"));
    NvmlGpuInfo info;
    info.index = i;
    char buf[96] = {};
    PML_RETURN_IF_ERROR(Check(api_->uuid(dev, buf, sizeof(buf)), "nvmlDeviceGetUUID"));
    info.uuid = buf;
    std::memset(buf, 0, sizeof(buf));
    PML_RETURN_IF_ERROR(Check(api_->vbios(dev, buf, sizeof(buf)), "nvmlDeviceGetVbiosVersion"));
    info.vbios_version = buf;
    unsigned int arch = 0;
    PML_RETURN_IF_ERROR(Check(api_->arch(dev, &arch), "nvmlDeviceGetArchitecture"));
    info.architecture = arch;
    info.architecture_name = NvmlArchitectureName(arch);
    unsigned int board = 0;
    if (api_->board_id(dev, &board) == kNvmlSuccess) info.board_id = board;
    out.push_back(std::move(info));
  }
  return out;
}

absl::StatusOr<std::vector<NvmlGpuEvidence>> NvmlCollector::CollectEvidence(
    absl::Span<const uint8_t> nonce) {
  if (nonce.size() != kNonceSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu nonce must be 32 bytes, got ", nonce.size()));
  }
  PML_ASSIGN_OR_RETURN(NvmlSystemState state, SystemState());
  PML_ASSIGN_OR_RETURN(std::vector<NvmlGpuInfo> gpus, ListGpus());
  if (!state.cc_enabled()) {
    std::vector<std::string> names;
    for (const auto& g : gpus) names.push_back(absl::StrCat(g.uuid, " (", g.architecture_name, ")"));
    return absl::FailedPreconditionError(absl::StrCat(
        "confidential computing is off on this system (ccFeature=", state.cc_feature,
        ", multiGpuMode=", state.multi_gpu_mode, ", driver ", state.driver_version,
        "): no GPU attestation evidence can be produced for ",
        names.empty() ? std::string("any GPU") : absl::StrJoin(names, ", ")));
  }
  absl::MutexLock lock(&mu_);
  std::vector<NvmlGpuEvidence> out;
  for (const auto& g : gpus) {
    if (g.architecture != 9 && g.architecture != 10) {
      return absl::FailedPreconditionError(absl::StrCat(
          "gpu ", g.uuid, " is ", g.architecture_name, ": only Hopper and Blackwell attest"));
    }
    nvmlDevice_t dev = nullptr;
    PML_RETURN_IF_ERROR(Check(api_->device_by_index(g.index, &dev), "nvmlDeviceGetHandleByIndex"));
    auto report = std::make_unique<nvmlConfComputeGpuAttestationReport_t>();
    std::memset(report.get(), 0, sizeof(*report));
    std::memcpy(report->nonce, nonce.data(), kNonceSize);
    PML_RETURN_IF_ERROR(
        Check(api_->device_report(dev, report.get()), "nvmlDeviceGetConfComputeGpuAttestationReport"));
    if (report->attestationReportSize == 0 ||
        report->attestationReportSize > sizeof(report->attestationReport)) {
      return absl::UnavailableError(absl::StrCat("gpu ", g.uuid, " returned an attestation report of ",
                                                 report->attestationReportSize, " bytes"));
    }
    auto cert = std::make_unique<nvmlConfComputeGpuCertificate_t>();
    std::memset(cert.get(), 0, sizeof(*cert));
    PML_RETURN_IF_ERROR(Check(api_->device_cert(dev, cert.get()), "nvmlDeviceGetConfComputeGpuCertificate"));
    if (cert->attestationCertChainSize > sizeof(cert->attestationCertChain)) {
      return absl::UnavailableError(absl::StrCat("gpu ", g.uuid, " returned a certificate chain of ",
                                                 cert->attestationCertChainSize, " bytes"));
    }
    NvmlGpuEvidence ev;
    ev.gpu = g;
    ev.report.assign(report->attestationReport,
                     report->attestationReport + report->attestationReportSize);
    ev.cert_chain_pem.assign(reinterpret_cast<const char*>(cert->attestationCertChain),
                             cert->attestationCertChainSize);
    out.push_back(std::move(ev));
  }
  return out;
}

absl::Status NvmlCollector::SetReadyState(bool ready) {
  absl::MutexLock lock(&mu_);
  if (api_->set_ready == nullptr) {
    return absl::FailedPreconditionError("this driver cannot set the confidential computing ready state");
  }
  return Check(api_->set_ready(ready ? 1 : 0), "nvmlSystemSetConfComputeGpusReadyState");
}

}  // namespace pml::tee
