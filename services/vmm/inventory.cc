#include "services/vmm/inventory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <system_error>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/json_depth.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"

namespace pml::vmm {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr uint16_t kNvidiaVendorId = 0x10de;
// PCI class codes (base class << 8 | subclass), PCI Code and ID Assignment Specification §1.
constexpr uint32_t kClassVga = 0x0300;
constexpr uint32_t kClass3dController = 0x0302;
constexpr uint32_t kClassBridgeOther = 0x0680;  // NVSwitch
constexpr uint32_t kClassPciBridge = 0x0604;
// Linux MAX_NUMNODES is at most 1 << 10 (CONFIG_NODES_SHIFT <= 10).
constexpr int kMaxNumaNode = 1023;
constexpr size_t kMaxNodeFileBytes = 64 << 10;  // cpulist/meminfo of a node; /proc/meminfo
constexpr size_t kMaxIommuGroupMembers = 256;
constexpr size_t kHashChunkBytes = 1 << 20;
constexpr int kMaxJsonDepth = 8;  // the metadata format nests 3 levels

struct GpuModel {
  uint16_t device_id;
  GpuArchitecture arch;
  const char* name;
};

// Device ids from the PCI ID repository (pci.ids, vendor 10de).
constexpr GpuModel kGpuModels[] = {
    {0x2330, GpuArchitecture::kHopper, "NVIDIA H100 80GB HBM3"},
    {0x2331, GpuArchitecture::kHopper, "NVIDIA H100 PCIe"},
    {0x2321, GpuArchitecture::kHopper, "NVIDIA H100 NVL"},
    {0x2335, GpuArchitecture::kHopper, "NVIDIA H200"},
    {0x233b, GpuArchitecture::kHopper, "NVIDIA H200 NVL"},
    {0x2342, GpuArchitecture::kHopper, "NVIDIA GH200"},
    {0x2901, GpuArchitecture::kBlackwell, "NVIDIA B200"},
    {0x22a3, GpuArchitecture::kLs10, "NVIDIA NVSwitch (LS10)"},
};

// Quoted and escaped, at most 64 bytes of `s`: safe to put untrusted names into messages.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 64;
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)), s.size() > kMax ? "...\"" : "\"");
}

// absl::string_view converts to std::string only explicitly.
std::string Str(absl::string_view s) { return std::string(s.data(), s.size()); }
fs::path ToPath(absl::string_view s) { return fs::path(s.begin(), s.end()); }

// strerror is not thread-safe; the error category's message is.
std::string ErrnoText(int err) { return std::generic_category().message(err); }

// A sysfs attribute, surrounding whitespace stripped; nullopt when it cannot be read.
std::optional<std::string> ReadAttr(const fs::path& p, size_t max_bytes = kMaxSysfsAttributeBytes) {
  auto s = core::ReadRegularFile(p.string(), max_bytes);
  if (!s.ok()) {
    return std::nullopt;
  }
  return Str(absl::StripAsciiWhitespace(*s));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Exactly `digits` hex digits (no prefix). Lowercase only when `lower_only`.
std::optional<uint32_t> ParseHexDigits(absl::string_view s, size_t digits, bool lower_only) {
  if (s.size() != digits || digits > 8) {
    return std::nullopt;
  }
  uint32_t v = 0;
  for (const char c : s) {
    const int d = HexDigit(c);
    if (d < 0 || (lower_only && c >= 'A' && c <= 'F')) {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  return v;
}

// A sysfs hex attribute as the kernel prints it: "0x" and exactly `digits` hex digits.
std::optional<uint32_t> ReadHexAttr(const fs::path& p, size_t digits) {
  const std::optional<std::string> s = ReadAttr(p);
  if (!s.has_value()) {
    return std::nullopt;
  }
  absl::string_view v = *s;
  if (!absl::ConsumePrefix(&v, "0x")) {
    return std::nullopt;
  }
  return ParseHexDigits(v, digits, /*lower_only=*/false);
}

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal without sign, leading '+' or whitespace, at most `max_digits` digits.
std::optional<uint64_t> ParseDecimal(absl::string_view s, size_t max_digits = 19) {
  uint64_t v = 0;
  if (!AllDigits(s) || s.size() > max_digits || !absl::SimpleAtoi(s, &v)) {
    return std::nullopt;
  }
  return v;
}

struct PciAddress {
  uint32_t domain = 0;
  uint32_t bus = 0, device = 0, function = 0;
  auto Tie() const { return std::tie(domain, bus, device, function); }
};

// "dddd:bb:dd.f" as the kernel names PCI devices: a 4..8 digit domain (VMD uses 5), lowercase.
std::optional<PciAddress> ParsePciAddress(absl::string_view s) {
  const std::vector<absl::string_view> parts = absl::StrSplit(s, ':');
  if (parts.size() != 3) {
    return std::nullopt;
  }
  const std::vector<absl::string_view> dev_fn = absl::StrSplit(parts[2], '.');
  if (dev_fn.size() != 2 || parts[0].size() < 4) {
    return std::nullopt;
  }
  const auto domain = ParseHexDigits(parts[0], parts[0].size(), /*lower_only=*/true);
  const auto bus = ParseHexDigits(parts[1], 2, /*lower_only=*/true);
  const auto device = ParseHexDigits(dev_fn[0], 2, /*lower_only=*/true);
  const auto function = ParseHexDigits(dev_fn[1], 1, /*lower_only=*/true);
  if (!domain || !bus || !device || !function || *device > 0x1f || *function > 7) {
    return std::nullopt;
  }
  return PciAddress{*domain, *bus, *device, *function};
}

// The last component of a symlink's target ("../../bus/pci/drivers/vfio-pci" → "vfio-pci").
// nullopt when `link` is absent; "" when it exists but is not a readable symlink.
std::optional<std::string> LinkBasename(const fs::path& link) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(link, ec);
  if (st.type() == fs::file_type::not_found) {
    return std::nullopt;
  }
  if (ec || st.type() != fs::file_type::symlink) {
    return std::string();
  }
  const fs::path target = fs::read_symlink(link, ec);
  if (ec) {
    return std::string();
  }
  std::string t = target.string();
  while (!t.empty() && t.back() == '/') {
    t.pop_back();
  }
  const size_t slash = t.rfind('/');
  return slash == std::string::npos ? t : t.substr(slash + 1);
}

bool IsValidDriverName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '+';
  });
}

struct DriverLink {
  enum class Kind { kUnbound, kBound, kMalformed } kind = Kind::kUnbound;
  std::string name;  // kBound only
};

DriverLink ReadDriver(const fs::path& device_dir) {
  const std::optional<std::string> base = LinkBasename(device_dir / "driver");
  if (!base.has_value()) {
    return {};
  }
  if (!IsValidDriverName(*base)) {
    return {DriverLink::Kind::kMalformed, ""};
  }
  return {DriverLink::Kind::kBound, *base};
}

// The IOMMU group number: -1 when absent, -2 when the link is malformed.
int ReadIommuGroup(const fs::path& device_dir) {
  const std::optional<std::string> base = LinkBasename(device_dir / "iommu_group");
  if (!base.has_value()) {
    return -1;
  }
  const std::optional<uint64_t> n = ParseDecimal(*base, 9);
  return n.has_value() ? static_cast<int>(*n) : -2;
}

int ReadNumaNode(const fs::path& device_dir) {
  const std::optional<std::string> s = ReadAttr(device_dir / "numa_node");
  if (!s.has_value()) {
    return -1;
  }
  absl::string_view v = *s;
  const bool negative = absl::ConsumePrefix(&v, "-");
  const std::optional<uint64_t> n = ParseDecimal(v, 4);
  if (!n.has_value()) {
    return -1;
  }
  if (negative) {
    return -1;  // "-1" (no node) or a malformed negative, both none
  }
  return *n <= static_cast<uint64_t>(kMaxNumaNode) ? static_cast<int>(*n) : -1;
}

// Drivers the kernel's vfio group viability check accepts beside a vfio-pci device.
bool DriverAllowedInVfioGroup(absl::string_view driver) {
  return driver == "vfio-pci" || driver == "pci-stub" || driver == "pcieport";
}

// Why another member of IOMMU group `group` keeps `self` from being passed through; "" when
// none does. A group directory that cannot be listed has no known members.
std::string IommuGroupProblem(const fs::path& root, int group, const std::string& self) {
  const fs::path dir = root / "kernel" / "iommu_groups" / std::to_string(group) / "devices";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return "";
  }
  std::vector<std::string> members;
  for (; it != fs::directory_iterator() && members.size() < kMaxIommuGroupMembers;
       it.increment(ec)) {
    if (ec) {
      break;
    }
    members.push_back(it->path().filename().string());
  }
  std::sort(members.begin(), members.end());
  for (const std::string& member : members) {
    if (member == self || !ParsePciAddress(member).has_value()) {
      continue;
    }
    const fs::path peer = dir / member;
    const std::optional<uint32_t> cls = ReadHexAttr(peer / "class", 6);
    if (cls.has_value() && (*cls >> 8) == kClassPciBridge) {
      continue;
    }
    const DriverLink driver = ReadDriver(peer);
    if (driver.kind == DriverLink::Kind::kUnbound) {
      continue;
    }
    if (driver.kind == DriverLink::Kind::kBound && DriverAllowedInVfioGroup(driver.name)) {
      continue;
    }
    return absl::StrCat("IOMMU group ", group, " also holds ", member, " bound to ",
                        driver.kind == DriverLink::Kind::kBound ? driver.name : "an unknown driver",
                        " (needs vfio-pci)");
  }
  return "";
}

// Lists `dir`. kNotFound when it does not exist, kFailedPrecondition when it cannot be listed.
absl::StatusOr<std::vector<fs::directory_entry>> ListDir(const fs::path& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat(dir.string(), " does not exist"));
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot stat ", dir.string(), ": ", ec.message()));
  }
  if (st.type() != fs::file_type::directory) {
    return absl::FailedPreconditionError(absl::StrCat(dir.string(), " is not a directory"));
  }
  std::vector<fs::directory_entry> out;
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    out.push_back(*it);
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
  }
  return out;
}

std::optional<GpuDevice> ReadGpu(const fs::path& root, const fs::path& dev,
                                 const std::string& slot) {
  const std::optional<uint32_t> vendor = ReadHexAttr(dev / "vendor", 4);
  if (!vendor.has_value() || *vendor != kNvidiaVendorId) {
    return std::nullopt;
  }
  const std::optional<uint32_t> cls = ReadHexAttr(dev / "class", 6);
  if (!cls.has_value()) {
    return std::nullopt;
  }
  GpuDevice gpu;
  switch (*cls >> 8) {  // ignore the programming interface byte
    case kClass3dController:
    case kClassVga:
      gpu.kind = GpuKind::kGpu;
      break;
    case kClassBridgeOther:
      gpu.kind = GpuKind::kNvSwitch;
      break;
    default:
      return std::nullopt;  // audio, USB-C and other functions of the card
  }
  const std::optional<uint32_t> device = ReadHexAttr(dev / "device", 4);
  if (!device.has_value()) {
    return std::nullopt;
  }
  gpu.slot = slot;
  gpu.vendor_id = static_cast<uint16_t>(*vendor);
  gpu.device_id = static_cast<uint16_t>(*device);
  gpu.name = "unknown";
  for (const GpuModel& m : kGpuModels) {
    if (m.device_id == gpu.device_id) {
      gpu.name = m.name;
      gpu.arch = m.arch;
    }
  }
  gpu.numa_node = ReadNumaNode(dev);

  std::vector<std::string> problems;
  const DriverLink driver = ReadDriver(dev);
  switch (driver.kind) {
    case DriverLink::Kind::kUnbound:
      problems.push_back("not bound to any driver (needs vfio-pci)");
      break;
    case DriverLink::Kind::kMalformed:
      problems.push_back("driver link is malformed");
      break;
    case DriverLink::Kind::kBound:
      gpu.driver = driver.name;
      gpu.vfio_bound = driver.name == "vfio-pci";
      if (!gpu.vfio_bound) {
        problems.push_back(absl::StrCat("bound to ", driver.name, ", not vfio-pci"));
      }
      break;
  }
  const int group = ReadIommuGroup(dev);
  if (group == -1) {
    problems.push_back("no IOMMU group (IOMMU off?)");
  } else if (group < 0) {
    problems.push_back("IOMMU group link is malformed");
  } else {
    gpu.iommu_group = group;
    std::string peer = IommuGroupProblem(root, group, slot);
    if (!peer.empty()) {
      problems.push_back(std::move(peer));
    }
  }
  gpu.unusable_reason = absl::StrJoin(problems, "; ");
  return gpu;
}

// "0-47,96-143": comma-separated CPUs or ascending ranges; "" is a CPU-less node.
bool IsValidCpuList(absl::string_view s) {
  if (s.empty()) {
    return true;
  }
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    const std::vector<absl::string_view> ends = absl::StrSplit(part, absl::MaxSplits('-', 1));
    const auto lo = ParseDecimal(ends[0], 7);
    if (!lo.has_value()) {
      return false;
    }
    if (ends.size() == 2) {
      const auto hi = ParseDecimal(ends[1], 7);
      if (!hi.has_value() || *hi < *lo) {
        return false;
      }
    }
  }
  return true;
}

// "Node <id> MemTotal: <n> kB" in a node's meminfo, in KiB.
std::optional<uint64_t> NodeMemTotalKib(absl::string_view meminfo, int id) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    const std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() == 5 && f[0] == "Node" && f[1] == std::to_string(id) && f[2] == "MemTotal:" &&
        f[4] == "kB") {
      return ParseDecimal(f[3]);
    }
  }
  return std::nullopt;
}

// ----- images -----

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// `value` as exactly N bytes of lowercase hex; the error names `field`.
template <size_t N>
absl::StatusOr<std::array<uint8_t, N>> FixedHex(const Json& value, absl::string_view field) {
  if (!value.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not a string"));
  }
  const std::string& s = value.get_ref<const std::string&>();
  if (s.size() != 2 * N || !IsLowerHex(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is not ", 2 * N, " lowercase hex characters"));
  }
  auto bytes = core::HexDecode(s);
  if (!bytes.ok() || bytes->size() != N) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not valid hex"));
  }
  std::array<uint8_t, N> out{};
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

absl::StatusOr<std::string> RequiredString(const Json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) {
    return absl::InvalidArgumentError(absl::StrCat(key, " is missing"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(key, " is not a string"));
  }
  return it->get<std::string>();
}

// A file name field: required, or optional (absent or null gives "").
absl::StatusOr<std::string> FileNameField(const Json& obj, const char* key, bool required,
                                          const std::vector<ImageFileInfo>& files) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(absl::StrCat(key, " is missing"));
    }
    return std::string();
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(key, " is not a string"));
  }
  const std::string name = it->get<std::string>();
  if (!IsValidImageName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, " file name ", Quote(name), " is invalid (want [A-Za-z0-9._-]{1,63}, no \"..\")"));
  }
  const bool listed = std::any_of(files.begin(), files.end(),
                                  [&](const ImageFileInfo& f) { return f.name == name; });
  if (!listed) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " ", Quote(name), " is not listed in files"));
  }
  return name;
}

bool IsPrintable(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

absl::StatusOr<std::vector<ImageFileInfo>> ParseFiles(const Json& j) {
  const auto it = j.find("files");
  if (it == j.end()) {
    return absl::InvalidArgumentError("files is missing");
  }
  if (!it->is_object()) {
    return absl::InvalidArgumentError("files is not an object");
  }
  if (it->empty() || it->size() > kMaxImageFiles) {
    return absl::InvalidArgumentError(
        absl::StrCat("files has ", it->size(), " entries, want 1 to ", kMaxImageFiles));
  }
  std::vector<ImageFileInfo> files;
  for (const auto& [name, entry] : it->items()) {
    if (!IsValidImageName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "files: file name ", Quote(name), " is invalid (want [A-Za-z0-9._-]{1,63}, no \"..\")"));
    }
    if (name == "metadata.json") {
      return absl::InvalidArgumentError("files: metadata.json cannot list itself");
    }
    const std::string field = absl::StrCat("files.", name);
    if (!entry.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(field, " is not an object"));
    }
    ImageFileInfo f;
    f.name = name;
    const auto sha = entry.find("sha256");
    if (sha == entry.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".sha256 is missing"));
    }
    PML_ASSIGN_OR_RETURN(f.sha256, FixedHex<32>(*sha, absl::StrCat(field, ".sha256")));
    const auto size = entry.find("size");
    if (size == entry.end() || !size->is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".size is missing or not a non-negative integer"));
    }
    f.size_bytes = size->get<uint64_t>();
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(),
            [](const ImageFileInfo& a, const ImageFileInfo& b) { return a.name < b.name; });
  return files;
}

// Fills `info` from metadata.json's text, checking everything that needs no other file. The
// message names the failed field.
absl::Status ParseMetadataInto(absl::string_view text, ImageInfo& info) {
  if (!core::JsonDepthWithin(text, kMaxJsonDepth)) {
    return absl::InvalidArgumentError(absl::StrCat("nests deeper than ", kMaxJsonDepth, " levels"));
  }
  const Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("is not valid JSON");
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError("is not a JSON object");
  }

  PML_ASSIGN_OR_RETURN(info.version, RequiredString(j, "version"));
  if (info.version.empty() || info.version.size() > 64 || !IsPrintable(info.version)) {
    return absl::InvalidArgumentError("version must be 1 to 64 printable ASCII characters");
  }
  PML_ASSIGN_OR_RETURN(const std::string variant, RequiredString(j, "variant"));
  if (variant == "production") {
    info.variant = ImageVariant::kProduction;
  } else if (variant == "development") {
    info.variant = ImageVariant::kDevelopment;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("variant ", Quote(variant), " is not \"production\" or \"development\""));
  }
  PML_ASSIGN_OR_RETURN(info.cmdline, RequiredString(j, "cmdline"));
  if (info.cmdline.size() > 4096 || !IsPrintable(info.cmdline)) {
    return absl::InvalidArgumentError(
        "cmdline must be at most 4096 printable ASCII characters (no control characters)");
  }
  PML_ASSIGN_OR_RETURN(info.files, ParseFiles(j));
  PML_ASSIGN_OR_RETURN(info.kernel, FileNameField(j, "kernel", true, info.files));
  PML_ASSIGN_OR_RETURN(info.initrd, FileNameField(j, "initrd", true, info.files));
  PML_ASSIGN_OR_RETURN(info.firmware, FileNameField(j, "firmware", false, info.files));
  PML_ASSIGN_OR_RETURN(info.rootfs, FileNameField(j, "rootfs", false, info.files));
  info.tdx_capable = !info.firmware.empty();

  const auto hash = j.find("os_image_hash");
  if (hash == j.end()) {
    return absl::InvalidArgumentError("os_image_hash is missing");
  }
  PML_ASSIGN_OR_RETURN(const auto claimed, FixedHex<32>(*hash, "os_image_hash"));

  const auto m = j.find("measurements");
  if (m != j.end() && !m->is_null()) {
    if (!m->is_object()) {
      return absl::InvalidArgumentError("measurements is not an object");
    }
    const std::pair<const char*, std::vector<uint8_t>*> regs[] = {{"mrtd", &info.mrtd},
                                                                  {"rtmr0", &info.rtmr0},
                                                                  {"rtmr1", &info.rtmr1},
                                                                  {"rtmr2", &info.rtmr2}};
    for (const auto& [key, out] : regs) {
      const auto it = m->find(key);
      if (it == m->end() || it->is_null()) {
        continue;
      }
      PML_ASSIGN_OR_RETURN(const auto value, FixedHex<48>(*it, absl::StrCat("measurements.", key)));
      out->assign(value.begin(), value.end());
    }
  }

  info.os_image_hash = OsImageHash(info.files);
  if (claimed != info.os_image_hash) {
    return absl::InvalidArgumentError(absl::StrCat("os_image_hash ", core::HexEncode(claimed),
                                                   " does not match the listed files (",
                                                   core::HexEncode(info.os_image_hash), ")"));
  }
  return absl::OkStatus();
}

int64_t TimespecNs(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Streams the rest of `fd` through SHA-256.
absl::StatusOr<std::array<uint8_t, 32>> HashFd(int fd) {
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  PML_CHECK(ctx != nullptr);
  PML_CHECK(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1);
  std::vector<uint8_t> buf(kHashChunkBytes);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return absl::InternalError(absl::StrCat("cannot read: ", ErrnoText(errno)));
    }
    if (n == 0) {
      break;
    }
    PML_CHECK(EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n)) == 1);
  }
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  PML_CHECK(EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == out.size());
  return out;
}

}  // namespace

// ----- GPUs -----

absl::StatusOr<std::vector<GpuDevice>> ScanGpus(absl::string_view sysfs_root) {
  if (sysfs_root.empty()) {
    return absl::InvalidArgumentError("sysfs root is empty");
  }
  const fs::path root = ToPath(sysfs_root);
  auto entries = ListDir(root / "bus" / "pci" / "devices");
  if (!entries.ok()) {
    return core::Annotate(entries.status(), "cannot scan PCI devices");
  }
  std::vector<std::pair<PciAddress, GpuDevice>> found;
  for (const fs::directory_entry& e : *entries) {
    const std::string slot = e.path().filename().string();
    const std::optional<PciAddress> addr = ParsePciAddress(slot);
    if (!addr.has_value()) {
      continue;
    }
    std::optional<GpuDevice> gpu = ReadGpu(root, e.path(), slot);
    if (gpu.has_value()) {
      found.emplace_back(*addr, std::move(*gpu));
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first.Tie() < b.first.Tie(); });
  std::vector<GpuDevice> out;
  out.reserve(found.size());
  for (auto& [addr, gpu] : found) {
    out.push_back(std::move(gpu));
  }
  return out;
}

// ----- NUMA -----

absl::StatusOr<std::vector<NumaNodeInfo>> ReadNumaNodes(absl::string_view sysfs_root) {
  if (sysfs_root.empty()) {
    return absl::InvalidArgumentError("sysfs root is empty");
  }
  const fs::path dir = ToPath(sysfs_root) / "devices" / "system" / "node";
  auto entries = ListDir(dir);
  if (absl::IsNotFound(entries.status())) {
    return std::vector<NumaNodeInfo>();
  }
  if (!entries.ok()) {
    return core::Annotate(entries.status(), "cannot read NUMA nodes");
  }
  std::vector<NumaNodeInfo> out;
  for (const fs::directory_entry& e : *entries) {
    const std::string filename = e.path().filename().string();
    absl::string_view name = filename;
    if (!absl::ConsumePrefix(&name, "node")) {
      continue;
    }
    const std::optional<uint64_t> id = ParseDecimal(name, 4);
    if (!id.has_value() || *id > static_cast<uint64_t>(kMaxNumaNode) ||
        (name.size() > 1 && name[0] == '0')) {
      continue;
    }
    NumaNodeInfo node;
    node.id = static_cast<int>(*id);
    if (auto cpus = ReadAttr(e.path() / "cpulist", kMaxNodeFileBytes);
        cpus.has_value() && IsValidCpuList(*cpus)) {
      node.cpus = *cpus;
    }
    if (auto meminfo = core::ReadRegularFile((e.path() / "meminfo").string(), kMaxNodeFileBytes);
        meminfo.ok()) {
      node.memory_mib = NodeMemTotalKib(*meminfo, node.id).value_or(0) / 1024;
    }
    if (auto free = ReadAttr(e.path() / "hugepages" / "hugepages-2048kB" / "free_hugepages");
        free.has_value()) {
      node.free_hugepages = ParseDecimal(*free).value_or(0);
    }
    out.push_back(std::move(node));
  }
  std::sort(out.begin(), out.end(),
            [](const NumaNodeInfo& a, const NumaNodeInfo& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<uint64_t> DefaultHugepageSizeKib(absl::string_view proc_meminfo_path) {
  PML_ASSIGN_OR_RETURN(const std::string text,
                       core::ReadRegularFile(Str(proc_meminfo_path), kMaxNodeFileBytes));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "Hugepagesize:")) {
      continue;
    }
    const std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::optional<uint64_t> kib =
        f.size() == 3 && f[2] == "kB" ? ParseDecimal(f[1]) : std::nullopt;
    if (!kib.has_value() || *kib == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed Hugepagesize line in ", proc_meminfo_path));
    }
    return *kib;
  }
  return absl::NotFoundError(absl::StrCat("no Hugepagesize line in ", proc_meminfo_path));
}

// ----- images -----

absl::StatusOr<ImageInfo> ParseImageMetadata(absl::string_view text) {
  if (text.size() > kMaxImageMetadataBytes)
    return absl::InvalidArgumentError(absl::StrCat("larger than ", kMaxImageMetadataBytes, " bytes"));
  ImageInfo info;
  PML_RETURN_IF_ERROR(ParseMetadataInto(text, info));
  return info;
}

bool IsValidImageName(absl::string_view name) {
  if (name.empty() || name.size() > 63 || name == "." || absl::StrContains(name, "..")) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string Sha256SumText(const std::vector<ImageFileInfo>& files) {
  std::vector<const ImageFileInfo*> sorted;
  sorted.reserve(files.size());
  for (const ImageFileInfo& f : files) {
    sorted.push_back(&f);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const ImageFileInfo* a, const ImageFileInfo* b) { return a->name < b->name; });
  std::string out;
  for (const ImageFileInfo* f : sorted) {
    absl::StrAppend(&out, core::HexEncode(f->sha256), "  ", f->name, "\n");
  }
  return out;
}

std::array<uint8_t, 32> OsImageHash(const std::vector<ImageFileInfo>& files) {
  return crypto::Sha256(Sha256SumText(files));
}

ImageCatalog::ImageCatalog(std::string images_dir)
    : images_dir_([&] {
        std::error_code ec;
        fs::path abs = fs::absolute(fs::path(images_dir), ec);
        return ec ? images_dir : abs.string();
      }()) {}

std::string ImageCatalog::CheckFile(const std::string& path, const ImageFileInfo& want) {
  // O_NOFOLLOW: a listed file must be the directory's own regular file, not a link to a host
  // file the VMM would then hand to QEMU. O_NONBLOCK: a FIFO must not hang the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return "is missing";
    }
    if (err == ELOOP) {
      return "is a symlink (must be a regular file)";
    }
    return absl::StrCat("cannot be opened: ", ErrnoText(err));
  }
  absl::Cleanup closer = [fd] { ::close(fd); };
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return absl::StrCat("cannot be read: ", ErrnoText(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return "is not a regular file";
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size != want.size_bytes) {
    return absl::StrCat("size ", size, " does not match metadata.json size ", want.size_bytes);
  }
  const auto key_of = [](const struct stat& s) {
    return FileKey{static_cast<uint64_t>(s.st_dev), static_cast<uint64_t>(s.st_ino),
                   static_cast<uint64_t>(s.st_size), TimespecNs(s.st_mtim), TimespecNs(s.st_ctim)};
  };
  const FileKey key = key_of(st);
  std::optional<std::array<uint8_t, 32>> digest;
  {
    absl::MutexLock lock(&mu_);
    const auto it = digests_.find(path);
    if (it != digests_.end() && it->second.key == key) {
      digest = it->second.sha256;
    }
  }
  if (!digest.has_value()) {
    absl::StatusOr<std::array<uint8_t, 32>> hashed = HashFd(fd);
    if (!hashed.ok()) {
      return Str(hashed.status().message());
    }
    digest = *hashed;
    // Cache only when the file did not change while it was hashed.
    struct stat after {};
    if (::fstat(fd, &after) == 0 && key_of(after) == key) {
      absl::MutexLock lock(&mu_);
      digests_[path] = CachedDigest{key, *digest};
    }
  }
  if (*digest != want.sha256) {
    return absl::StrCat("sha256 ", core::HexEncode(*digest), " does not match metadata.json ",
                        core::HexEncode(want.sha256));
  }
  return "";
}

ImageInfo ImageCatalog::Load(const std::string& name, std::set<std::string>* seen) {
  ImageInfo info;
  info.name = name;
  info.dir = (fs::path(images_dir_) / name).string();
  if (!IsValidImageName(name)) {
    info.error = absl::StrCat("image name ", Quote(name),
                              " is invalid (want [A-Za-z0-9._-]{1,63}, no \"..\")");
    return info;
  }
  const std::string metadata_path = (fs::path(info.dir) / "metadata.json").string();
  absl::StatusOr<std::string> text = core::ReadRegularFile(metadata_path, kMaxImageMetadataBytes);
  if (!text.ok()) {
    info.error = absl::IsNotFound(text.status())
                     ? "metadata.json is missing"
                     : absl::StrCat("metadata.json: ", text.status().message());
    return info;
  }
  absl::Status parsed;
  try {  // our code throws nothing: nlohmann's accessors are guarded, this is a backstop
    parsed = ParseMetadataInto(*text, info);
  } catch (const std::exception&) {
    parsed = absl::InvalidArgumentError("has an unexpected structure");
  }
  if (!parsed.ok()) {
    info.error = absl::StrCat("metadata.json: ", parsed.message());
    return info;
  }
  for (const ImageFileInfo& f : info.files) {
    const std::string path = (fs::path(info.dir) / f.name).string();
    if (seen != nullptr) {
      seen->insert(path);
    }
    const std::string problem = CheckFile(path, f);
    if (!problem.empty()) {
      info.error = absl::StrCat("file ", f.name, " ", problem);
      return info;
    }
  }
  return info;
}

std::vector<ImageInfo> ImageCatalog::List() {
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(images_dir_, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec)) {
      names.push_back(it->path().filename().string());
    }
  }
  if (ec) {
    return {};
  }
  std::sort(names.begin(), names.end());
  std::set<std::string> seen;
  std::vector<ImageInfo> out;
  out.reserve(names.size());
  for (const std::string& name : names) {
    out.push_back(Load(name, &seen));
  }
  absl::MutexLock lock(&mu_);
  for (auto d = digests_.begin(); d != digests_.end();) {
    d = seen.count(d->first) != 0 ? std::next(d) : digests_.erase(d);
  }
  return out;
}

absl::StatusOr<ImageInfo> ImageCatalog::Get(absl::string_view name) {
  if (!IsValidImageName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image name ", Quote(name), " is invalid (want [A-Za-z0-9._-]{1,63}, no \"..\")"));
  }
  const std::string n(name);
  std::error_code ec;
  if (!fs::is_directory(fs::path(images_dir_) / n, ec)) {
    return absl::NotFoundError(absl::StrCat("image ", n, " not found in ", images_dir_));
  }
  ImageInfo info = Load(n, nullptr);
  if (!info.error.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("image ", n, " is unusable: ", info.error));
  }
  return info;
}

}  // namespace pml::vmm
