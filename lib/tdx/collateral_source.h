#pragma once
// Where collateral comes from (STYLE.md §1: one interface, an implementation per file, an
// explicit factory). Implementations in lib/tdx (no network):
//   - a bundle file in the collateral.json shape (one object, or a JSON array of them);
//   - a local cache directory, one file per (TEE, CA type, FMSPC), refreshed from an optional
//     upstream source when the cached copy nears its earliest nextUpdate.
// The Intel PCS / PCCS client (libcurl) lives in its own target, pml_tdx_pcs (pcs_client.h),
// together with the factory that can build every kind (collateral_source_factory.h).
//
// A source does not verify anything: the verifier checks every signature and time.
// Thread-safety: implementations are thread-safe.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/clock.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/pck_cert.h"

namespace pml::tdx {

class CollateralSource {
 public:
  virtual ~CollateralSource() = default;

  // Collateral for platforms with `fmspc` whose PCK was issued by the `ca` PCK CA; TDX TCB info
  // and TD_QE identity when `is_tdx`, else SGX TCB info and QE identity.
  // Errors: kNotFound (nothing for this FMSPC), kUnavailable (upstream down; retry), kInvalidArgument
  // (malformed collateral), others from file I/O.
  virtual absl::StatusOr<Collateral> GetCollateral(const Fmspc& fmspc, PckCaType ca,
                                                   bool is_tdx) = 0;
};

// Serves the collateral in `path` (read once, at construction). A single object is returned for
// every request (the verifier rejects one that does not fit the quote); from an array, the entry
// whose TCB info matches the FMSPC and TEE and whose PCK CRL issuer matches the CA type.
// kNotFound / kInvalidArgument when the file is missing or malformed.
absl::StatusOr<std::unique_ptr<CollateralSource>> MakeBundleFileSource(absl::string_view path);

struct CacheDirOptions {
  std::string dir;
  // Consulted on a miss or when the cached copy is within `refresh_margin` of its earliest
  // nextUpdate; may be null (offline: the cached copy is served even when stale, and the
  // verifier reports the expiry).
  std::unique_ptr<CollateralSource> upstream;
  absl::Duration refresh_margin = absl::Hours(1);
};

// A cache directory holding "<tdx|sgx>-<platform|processor>-<fmspc hex>.json" files in the
// collateral.json shape, written atomically. Parsed entries are also kept in memory. `clock`
// must outlive the source. kInvalidArgument when `dir` is empty; the directory is created.
absl::StatusOr<std::unique_ptr<CollateralSource>> MakeCacheDirSource(CacheDirOptions options,
                                                                     const core::Clock& clock);

// The cache file name for a key ("tdx-platform-b0c06f000000.json").
std::string CollateralCacheFileName(const Fmspc& fmspc, PckCaType ca, bool is_tdx);

// Earliest nextUpdate of the TCB info, QE identity and both CRLs (the moment the collateral must
// be refreshed). kInvalidArgument when one of them does not parse.
absl::StatusOr<absl::Time> CollateralNextUpdate(const Collateral& c);

}  // namespace pml::tdx
