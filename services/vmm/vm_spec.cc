#include "services/vmm/vm_spec.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/crypto/hash.h"

namespace pml::vmm {
namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

absl::Status ValidateCompose(absl::string_view compose) {
  if (compose.empty()) return Bad("spec.app_compose", "empty");
  if (compose.size() > kMaxAppComposeBytes)
    return Bad("spec.app_compose", absl::StrCat("larger than ", kMaxAppComposeBytes, " bytes"));
  const Json j = Json::parse(compose.begin(), compose.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad("spec.app_compose", "not a JSON object");
  const auto runner = j.find("runner");
  if (runner == j.end() || !runner->is_string())
    return Bad("spec.app_compose", "no \"runner\" (want \"docker-compose\" or \"bash\")");
  const std::string r = runner->get<std::string>();
  if (r == "docker-compose") {
    const auto f = j.find("docker_compose_file");
    if (f == j.end() || !f->is_string())
      return Bad("spec.app_compose", "runner docker-compose needs a string \"docker_compose_file\"");
  } else if (r == "bash") {
    const auto f = j.find("bash_script");
    if (f == j.end() || !f->is_string())
      return Bad("spec.app_compose", "runner bash needs a string \"bash_script\"");
  } else {
    return Bad("spec.app_compose", "runner must be \"docker-compose\" or \"bash\"");
  }
  return absl::OkStatus();
}

std::string HexOf(absl::Span<const uint8_t> b) { return core::HexEncode(b); }

const char* ProtoName(PortProtocol p) {
  switch (p) {
    case PortProtocol::kTcp: return "tcp";
    case PortProtocol::kUdp: return "udp";
    default: return "unspecified";
  }
}

}  // namespace

absl::Status ValidateName(absl::string_view value, absl::string_view field) {
  if (value.empty() || value.size() > 63)
    return Bad(field, "want 1-63 characters of [A-Za-z0-9._-]");
  if (value.front() == '.' || value.front() == '-')
    return Bad(field, "must not start with '.' or '-'");
  for (char c : value) {
    if (!IsNameChar(c)) return Bad(field, "only [A-Za-z0-9._-] allowed");
  }
  return absl::OkStatus();
}

bool IsPciSlot(absl::string_view s) {
  // dddd:bb:ss.f
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return s[11] >= '0' && s[11] <= '7';
}

absl::Status ValidateSpec(const VmSpec& spec) {
  if (auto st = ValidateName(spec.name, "spec.name"); !st.ok()) return st;
  if (auto st = ValidateName(spec.image, "spec.image"); !st.ok()) return st;
  if (auto st = ValidateCompose(spec.app_compose); !st.ok()) return st;
  if (spec.vcpus < 1 || spec.vcpus > kMaxVcpus)
    return Bad("spec.vcpus", absl::StrCat("want 1-", kMaxVcpus, ", got ", spec.vcpus));
  if (spec.memory_mib < kMinMemoryMib || spec.memory_mib > kMaxMemoryMib)
    return Bad("spec.memory_mib",
               absl::StrCat("want ", kMinMemoryMib, "-", kMaxMemoryMib, " MiB, got ", spec.memory_mib));
  if (spec.disk_size_gib > kMaxDiskGib)
    return Bad("spec.disk_size_gib", absl::StrCat("at most ", kMaxDiskGib));
  if (spec.all_gpus && !spec.gpu_slots.empty())
    return Bad("spec.gpus", "give slots or all, not both");
  std::set<std::string> slots;
  for (const auto& s : spec.gpu_slots) {
    if (!IsPciSlot(s))
      return Bad("spec.gpus.slots", absl::StrCat("not a PCI address like 0000:18:00.0: \"",
                                                 s.substr(0, 32), "\""));
    if (!slots.insert(s).second) return Bad("spec.gpus.slots", absl::StrCat("repeated ", s));
  }
  if (spec.ports.size() > kMaxPorts) return Bad("spec.ports", absl::StrCat("at most ", kMaxPorts));
  std::set<std::pair<int, int>> host_ports;
  for (size_t i = 0; i < spec.ports.size(); ++i) {
    const PortForward& p = spec.ports[i];
    const std::string f = absl::StrCat("spec.ports[", i, "]");
    if (p.protocol != PortProtocol::kTcp && p.protocol != PortProtocol::kUdp)
      return Bad(f, "protocol must be tcp or udp");
    if (p.host_port == 0) return Bad(f, "host_port must be 1-65535");
    if (p.guest_port == 0) return Bad(f, "guest_port must be 1-65535");
    if (!IsIpLiteral(p.host_address))
      return Bad(f, absl::StrCat("host_address is not an IP address: \"", p.host_address.substr(0, 64), "\""));
    if (!host_ports.insert({static_cast<int>(p.protocol), p.host_port}).second)
      return Bad(f, absl::StrCat("host port ", ProtoName(p.protocol), ":", p.host_port,
                                 " forwarded twice"));
  }
  if (spec.tee_mode != TeeMode::kTdx && spec.tee_mode != TeeMode::kNone)
    return Bad("spec.tee_mode", "required: TEE_MODE_TDX or TEE_MODE_NONE");
  if (spec.numa_node && (*spec.numa_node < 0 || *spec.numa_node > 1023))
    return Bad("spec.numa_node", "want 0-1023");
  if (spec.kms_urls.size() > kMaxKmsUrls) return Bad("spec.kms_urls", absl::StrCat("at most ", kMaxKmsUrls));
  for (const auto& u : spec.kms_urls) {
    const bool scheme = absl::StartsWith(u, "https://") || absl::StartsWith(u, "http://");
    const bool clean = std::none_of(u.begin(), u.end(), [](char c) {
      return static_cast<unsigned char>(c) <= 0x20 || c == '"' || c == '\\' || c == 0x7f;
    });
    if (!scheme || !clean || u.size() > 2048)
      return Bad("spec.kms_urls", "want http(s):// URLs without spaces or quotes");
  }
  if (!spec.encrypted_env.empty() &&
      (spec.encrypted_env.size() < 60 || spec.encrypted_env.size() > kMaxEncryptedEnvBytes))
    return Bad("spec.encrypted_env",
               absl::StrCat("want 60-", kMaxEncryptedEnvBytes, " bytes (eph_pk ‖ iv ‖ ciphertext+tag)"));
  if (!spec.app_id.empty() && spec.app_id.size() != 20)
    return Bad("spec.app_id", absl::StrCat("want 20 bytes, got ", spec.app_id.size()));
  return absl::OkStatus();
}

AppIdentity ComputeAppIdentity(absl::string_view app_compose, absl::Span<const uint8_t> pinned) {
  AppIdentity id;
  const auto h = crypto::Sha256(app_compose);
  std::copy(h.begin(), h.end(), id.compose_hash.begin());
  if (pinned.size() == 20) {
    id.app_id.assign(pinned.begin(), pinned.end());
  } else {
    id.app_id.assign(h.begin(), h.begin() + 20);
  }
  id.mrconfigid[0] = 0x01;
  std::copy(h.begin(), h.end(), id.mrconfigid.begin() + 1);
  return id;
}

std::vector<uint8_t> ComputeInstanceId(absl::Span<const uint8_t> seed,
                                       absl::Span<const uint8_t> app_id) {
  std::vector<uint8_t> in(seed.begin(), seed.end());
  in.insert(in.end(), app_id.begin(), app_id.end());
  const auto h = crypto::Sha256(in);
  return std::vector<uint8_t>(h.begin(), h.begin() + 20);
}

std::string NewUuid() {
  std::vector<uint8_t> b = crypto::RandomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const std::string h = core::HexEncode(b);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                      h.substr(16, 4), "-", h.substr(20));
}

std::string SpecToJson(const VmSpec& s) {
  Json ports = Json::array();
  for (const auto& p : s.ports) {
    ports.push_back({{"protocol", ProtoName(p.protocol)},
                     {"host_address", p.host_address},
                     {"host_port", p.host_port},
                     {"guest_port", p.guest_port}});
  }
  Json j = {{"name", s.name},
            {"image", s.image},
            {"app_compose", s.app_compose},
            {"vcpus", s.vcpus},
            {"memory_mib", s.memory_mib},
            {"disk_size_gib", s.disk_size_gib},
            {"gpu_slots", s.gpu_slots},
            {"all_gpus", s.all_gpus},
            {"ports", ports},
            {"tee_mode", static_cast<int>(s.tee_mode)},
            {"hugepages", s.hugepages},
            {"pin_numa", s.pin_numa},
            {"numa_node", s.numa_node ? Json(*s.numa_node) : Json(nullptr)},
            {"kms_urls", s.kms_urls},
            {"encrypted_env", HexOf(s.encrypted_env)},
            {"app_id", HexOf(s.app_id)}};
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::StatusOr<VmSpec> SpecFromJson(absl::string_view text) {
  const Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("stored VM spec is not JSON");
  VmSpec s;
  try {
    s.name = j.at("name").get<std::string>();
    s.image = j.at("image").get<std::string>();
    s.app_compose = j.at("app_compose").get<std::string>();
    s.vcpus = j.at("vcpus").get<uint32_t>();
    s.memory_mib = j.at("memory_mib").get<uint64_t>();
    s.disk_size_gib = j.at("disk_size_gib").get<uint32_t>();
    s.gpu_slots = j.at("gpu_slots").get<std::vector<std::string>>();
    s.all_gpus = j.at("all_gpus").get<bool>();
    for (const auto& p : j.at("ports")) {
      PortForward f;
      const std::string proto = p.at("protocol").get<std::string>();
      f.protocol = proto == "tcp" ? PortProtocol::kTcp
                   : proto == "udp" ? PortProtocol::kUdp
                                    : PortProtocol::kUnspecified;
      f.host_address = p.at("host_address").get<std::string>();
      f.host_port = p.at("host_port").get<uint16_t>();
      f.guest_port = p.at("guest_port").get<uint16_t>();
      s.ports.push_back(std::move(f));
    }
    s.tee_mode = static_cast<TeeMode>(j.at("tee_mode").get<int>());
    s.hugepages = j.at("hugepages").get<bool>();
    s.pin_numa = j.at("pin_numa").get<bool>();
    if (!j.at("numa_node").is_null()) s.numa_node = j.at("numa_node").get<int>();
    s.kms_urls = j.at("kms_urls").get<std::vector<std::string>>();
    auto env = core::HexDecode(j.at("encrypted_env").get<std::string>());
    auto app = core::HexDecode(j.at("app_id").get<std::string>());
    if (!env.ok() || !app.ok()) return absl::DataLossError("stored VM spec: bad hex");
    s.encrypted_env = *std::move(env);
    s.app_id = *std::move(app);
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat("stored VM spec: ", e.what()));
  }
  return s;
}

std::string SpecHash(const VmSpec& spec) {
  return core::HexEncode(crypto::Sha256(SpecToJson(spec)));
}

std::vector<ConfigFile> GuestConfigFiles(const VmSpec& spec, const ImageInfo& image,
                                         absl::Span<const uint8_t> app_id,
                                         absl::Span<const uint8_t> seed,
                                         absl::Span<const uint8_t> instance_id, size_t num_gpus,
                                         size_t num_nvswitches) {
  std::vector<ConfigFile> files;
  files.push_back({"app-compose.json", spec.app_compose});
  // dstack's VmConfig, serialized as a string inside .sys-config.json (the guest measures and
  // sends it as is).
  const Json vm_config = {{"os_image_hash", core::HexEncode(image.os_image_hash)},
                          {"cpu_count", spec.vcpus},
                          {"memory_size", spec.memory_mib * 1024 * 1024},
                          {"hugepages", spec.hugepages},
                          {"num_gpus", num_gpus},
                          {"num_nvswitches", num_nvswitches},
                          {"image", image.name},
                          {"tee_mode", spec.tee_mode == TeeMode::kTdx ? "tdx" : "none"}};
  const Json sys = {{"kms_urls", spec.kms_urls}, {"vm_config", vm_config.dump()}};
  files.push_back({".sys-config.json", sys.dump()});
  const Json inst = {{"app_id", core::HexEncode(app_id)},
                     {"instance_id_seed", core::HexEncode(seed)},
                     {"instance_id", core::HexEncode(instance_id)}};
  files.push_back({".instance_info", inst.dump()});
  if (!spec.encrypted_env.empty())
    files.push_back({".encrypted-env", std::string(spec.encrypted_env.begin(), spec.encrypted_env.end())});
  return files;
}

}  // namespace pml::vmm
