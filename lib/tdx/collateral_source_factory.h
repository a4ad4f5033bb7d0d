#pragma once
// The one place that turns configuration into a CollateralSource (STYLE.md §1: an explicit
// switch, no self-registration). Lives in pml_tdx_pcs because one kind needs libcurl.
// Thread-safety: MakeCollateralSource is thread-safe; see each source for its own.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/core/clock.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/pcs_client.h"

namespace pml::tdx {

enum class CollateralSourceKind {
  kBundleFile,  // `path` is a collateral.json (object or array)
  kCacheDir,    // `path` is a cache directory; upstream PCS/PCCS when `cache_upstream` is set
  kPcs,         // Intel PCS / PCCS at `pcs.base_url`
};

struct CollateralSourceConfig {
  CollateralSourceKind kind = CollateralSourceKind::kBundleFile;
  std::string path;
  PcsOptions pcs;
  bool cache_upstream = false;  // kCacheDir only: refresh from `pcs`
  absl::Duration refresh_margin = absl::Hours(1);
};

// kInvalidArgument for an unusable configuration (empty path, bad URL); errors of the chosen
// constructor otherwise. `clock` must outlive the source.
absl::StatusOr<std::unique_ptr<CollateralSource>> MakeCollateralSource(
    const CollateralSourceConfig& config, const core::Clock& clock);

}  // namespace pml::tdx
