#include "lib/tdx/collateral_source_factory.h"

#include <utility>

#include "absl/status/status.h"
#include "lib/core/status.h"

namespace pml::tdx {

absl::StatusOr<std::unique_ptr<CollateralSource>> MakeCollateralSource(
    const CollateralSourceConfig& config, const core::Clock& clock) {
  switch (config.kind) {
    case CollateralSourceKind::kBundleFile:
      if (config.path.empty()) return absl::InvalidArgumentError("collateral bundle path is empty");
      return MakeBundleFileSource(config.path);
    case CollateralSourceKind::kCacheDir: {
      CacheDirOptions options;
      options.dir = config.path;
      options.refresh_margin = config.refresh_margin;
      if (config.cache_upstream) {
        PML_ASSIGN_OR_RETURN(options.upstream, MakePcsSource(config.pcs));
      }
      return MakeCacheDirSource(std::move(options), clock);
    }
    case CollateralSourceKind::kPcs:
      return MakePcsSource(config.pcs);
  }
  return absl::InvalidArgumentError("unknown collateral source kind");
}

}  // namespace pml::tdx
