#pragma once
// Test-only access to the shared GPU vectors (shared/vectors/gpu, found through PML_SHARED_DIR,
// else the configure-time shared dir)
// and to lib/gpu/testdata/vector_expectations.json, which transcribes each vector directory's
// PROVENANCE.md outcome (those vectors have no expected.json).

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/verify.h"

namespace pml::gpu::testing {

inline std::string SharedDir() {
  const char* d = std::getenv("PML_SHARED_DIR");
  return d == nullptr ? std::string(PML_GPU_DEFAULT_SHARED_DIR) : std::string(d);
}

inline std::string GpuVectorsDir() { return SharedDir() + "/vectors/gpu"; }
inline std::string VectorPath(absl::string_view dir, absl::string_view file) {
  return GpuVectorsDir() + "/" + std::string(dir) + "/" + std::string(file);
}

// Vector directories: every top-level directory except roots/ and claims-samples/ (data, not
// vectors), with negative/ expanded into its subdirectories ("negative/rims-tampered").
inline std::vector<std::string> ListVectorDirs() {
  std::vector<std::string> out;
  if (SharedDir().empty())
    return out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(GpuVectorsDir(), ec)) {
    if (!e.is_directory(ec))
      continue;
    const std::string name = e.path().filename().string();
    if (name == "roots" || name == "claims-samples" || name.empty() || name[0] == '.')
      continue;
    if (name == "negative") {
      for (const auto& n : std::filesystem::directory_iterator(e.path(), ec)) {
        if (n.is_directory(ec))
          out.push_back("negative/" + n.path().filename().string());
      }
      continue;
    }
    out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string NameFromDir(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  }
  return s;
}

inline nlohmann::json ReadJsonFile(const std::string& path) {
  auto text = core::ReadFile(path);
  if (!text.ok())
    return nlohmann::json();
  return nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

inline nlohmann::json Expectations() {
  return ReadJsonFile(std::string(PML_GPU_TESTDATA_DIR) + "/vector_expectations.json");
}

// The manifest cases for one vector directory.
inline std::vector<nlohmann::json> CasesFor(absl::string_view dir) {
  std::vector<nlohmann::json> out;
  nlohmann::json all = Expectations();
  if (!all.is_object())
    return out;
  for (const auto& c : all["cases"]) {
    if (c.value("dir", "") == dir)
      out.push_back(c);
  }
  return out;
}

inline absl::Time ParseTime(const std::string& text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err))
    return absl::InfinitePast();
  return t;
}

inline absl::StatusOr<TrustAnchors> VectorAnchors() {
  return TrustAnchors::NvidiaFromFiles(GpuVectorsDir() + "/roots/nvidia-device-identity-ca.pem",
                                       GpuVectorsDir() + "/roots/nvidia-corim-signing-root-ca.pem");
}

// A real report + chain + nonce for tests that mutate them (the Azure H100 NVL vector).
struct RealReport {
  std::vector<uint8_t> bytes;
  std::string chain;
  Nonce nonce{};
};
inline RealReport AzureReport() {
  RealReport r;
  const std::string dir = "h100nvl-595.71.05-azure-nras";
  auto b = core::ReadFileBytes(VectorPath(dir, "attestation-report.bin"));
  if (b.ok())
    r.bytes = *b;
  auto c = core::ReadFile(VectorPath(dir, "cert-chain.pem"));
  if (c.ok())
    r.chain = *c;
  auto n = core::ReadFile(VectorPath(dir, "nonce.hex.txt"));
  if (n.ok()) {
    auto parsed = ParseNonceHex(*n);
    if (parsed.ok())
      r.nonce = *parsed;
  }
  return r;
}

}  // namespace pml::gpu::testing
