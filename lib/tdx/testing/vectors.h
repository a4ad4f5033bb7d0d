#pragma once
// Test-only access to the shared TDX vectors (shared/vectors/tdx, found through the
// PML_SHARED_DIR environment variable that pml_test sets). Expectations are always read from each
// vector's expected.json, never written into test code (STYLE.md §7).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"

namespace pml::tdx::testing {

// PML_SHARED_DIR from the environment (ctest sets it), else the configure-time path compiled
// in as PML_DEFAULT_SHARED_DIR (so that test discovery at build time sees the vectors too).
inline std::string SharedDir() {
  const char* d = std::getenv("PML_SHARED_DIR");
  if (d != nullptr && *d != '\0') return std::string(d);
#ifdef PML_DEFAULT_SHARED_DIR
  return PML_DEFAULT_SHARED_DIR;
#else
  return std::string();
#endif
}

inline std::string TdxVectorsDir() { return SharedDir() + "/vectors/tdx"; }

inline std::string VectorDir(absl::string_view name) {
  return TdxVectorsDir() + "/" + std::string(name);
}

// Names of the vector directories (skips "_trust" and any "_*" helper folder and plain files).
// Empty when the shared dir cannot be found, which leaves the parameterized suites
// uninstantiated and fails the run (GoogleTestVerification.UninstantiatedParameterizedTestSuite).
inline std::vector<std::string> ListVectorDirs() {
  std::vector<std::string> out;
  std::error_code ec;
  const std::string root = TdxVectorsDir();
  if (SharedDir().empty()) return out;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (!e.is_directory(ec)) continue;
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '_' || name[0] == '.') continue;
    out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A gtest-safe test name from a directory name.
inline std::string NameFromDir(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

inline nlohmann::json ReadJsonFile(const std::string& path) {
  auto text = core::ReadFile(path);
  if (!text.ok()) return nlohmann::json();
  return nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

inline nlohmann::json ReadExpected(absl::string_view vector) {
  return ReadJsonFile(VectorDir(vector) + "/expected.json");
}

inline std::vector<uint8_t> ReadQuoteBytes(absl::string_view vector) {
  auto bytes = core::ReadFileBytes(VectorDir(vector) + "/quote.bin");
  return bytes.ok() ? *bytes : std::vector<uint8_t>();
}

inline std::string IntelRootPubkeyPath() { return TdxVectorsDir() + "/_trust/intel_sgx_root_ca.pubkey.pem"; }

}  // namespace pml::tdx::testing
