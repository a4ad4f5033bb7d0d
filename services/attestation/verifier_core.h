#pragma once
// pml-verifier's TDX quote verification, free of gRPC (STYLE.md §1): a tdx::Verifier with its
// caches, the trust anchors, where collateral comes from when a request brings none (a cache
// directory, an upstream Intel PCS / PCCS source, both, or neither), and the verifier's
// Prometheus metrics. verifier_service.cc converts protos to the types here and back
// (verifier_convert.h); tests drive this class directly.
//
// Results, not errors (pml.attestation.v1): a quote that parses but fails a signature, chain,
// binding, TCB or collateral-time check is an OK TdxVerification with verified == false and
// Intel's error class. Errors are reserved for input that cannot be used at all and for
// collateral that cannot be obtained:
//   kInvalidArgument     the quote does not parse ("quote: UNSUPPORTED_QUOTE_FORMAT: ...") or
//                        is empty / over tdx::kMaxQuoteSize.
//   kFailedPrecondition  no collateral in the request and none obtainable without the network
//                        (offline requested, or no cache/upstream configured); names the FMSPC.
//   kUnavailable         the upstream (PCS/PCCS) failed; retry is safe.
//
// Thread-safety: every method is thread-safe. Verifications run concurrently (the tdx::Verifier
// caches under their own mutex); Refresh swaps the collateral sources under a mutex.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/core/clock.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/pck_cert.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/trust_anchors.h"
#include "lib/tdx/verify.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace pml::attestation {

// Name of the simulated root anchor when --trust-simulated-tee is given.
inline constexpr absl::string_view kSimulatedRootAnchorName = "pml-simulated-tdx-root";

// The Intel SGX Root CA key, plus lib/tee's simulated root (marked simulated) when
// `trust_simulated_tee`. kInternal if the built-in simulated key does not load (a broken build).
absl::StatusOr<tdx::TrustAnchors> MakeTrustAnchors(bool trust_simulated_tee);

// Where the collateral of one verification came from.
enum class CollateralOrigin {
  kRequest,  // the request carried it
  kCache,    // the cache directory or the verifier's in-memory per-FMSPC map; no network
  kNetwork,  // fetched from the upstream (PCS/PCCS) for this request
};

struct TdxVerifyInput {
  std::vector<uint8_t> quote;
  // Absent: the cache / upstream is asked for the quote's FMSPC.
  std::optional<tdx::Collateral> collateral;
  // Absent: the core's clock.
  std::optional<absl::Time> at;
  // dstack event log JSON to replay against the RTMRs; empty: none.
  std::string event_log;
  // Never use the network for this request.
  bool offline = false;
};

// App identity read from the dstack runtime events of a replayed log (only events whose digest
// was recomputed, so only what RTMR3 commits to). Empty fields: event absent.
// The app identity an RTMR3 log states. Identity events count only as the boot sequence writes
// them: app-id, compose-hash and instance-id once each, before boot-mr-done; os-image-hash once,
// before key-provider (dstack writes it after boot-mr-done); key-provider once. Anything else (a second app-id, an identity event after boot-mr-done, which
// an app with RTMR3 access could append) is reported in `error` and fails the appraisal's
// app-info consistency check: the first, boot-time value is the one kept.
struct LogAppInfo {
  std::vector<uint8_t> app_id;
  std::vector<uint8_t> compose_hash;
  std::vector<uint8_t> instance_id;
  std::vector<uint8_t> os_image_hash;
  std::string key_provider_info;
  std::string error;
};

struct EventLogReplayResult {
  bool matches = false;
  std::array<tdx::Bytes48, 4> replayed{};
  std::vector<uint32_t> mismatched;
  size_t event_count = 0;
  // Events per RTMR. A log may omit the boot events of RTMR0-2 (a simulated TD has none; the
  // quote's values are then all there is), never those of RTMR3.
  std::array<size_t, 4> events_per_rtmr{};
  LogAppInfo app_info;
  // Why the log could not be replayed (then the rest is empty).
  std::string error;
};

struct TdxVerification {
  absl::Time verification_time;
  tdx::Quote quote;
  // True when every signature, chain, CRL and binding check passed and the collateral was valid
  // at verification_time. The TCB status is then the answer.
  bool verified = false;
  // When !verified: Intel's class (tdx/errors.h names, e.g. "INVALID_QUOTE_SIGNATURE",
  // "SGX_CRL_EXPIRED") and the detail.
  std::string error_class;
  std::string error_message;
  // The failure is collateral time (an expiry class or COLLATERAL_NOT_YET_VALID).
  bool collateral_time_error = false;
  // The TCB evaluation: set when verified, and also when only the collateral time check failed
  // (re-evaluated with QvE's allow-expired semantics, so the TCB status is still reported).
  std::optional<tdx::VerifiedQuote> evaluation;
  CollateralOrigin collateral_origin = CollateralOrigin::kRequest;
  std::optional<EventLogReplayResult> event_log;
};

// One collateral file of the cache directory.
struct CachedCollateral {
  std::string file_name;  // "tdx-platform-b0c06f000000.json"
  tdx::Fmspc fmspc{};
  bool is_tdx = true;
  tdx::PckCaType ca = tdx::PckCaType::kPlatform;
  absl::Time fetched_at;    // when the file was written
  absl::Time expires_at;    // earliest nextUpdate of TCB info, QE identity and both CRLs
  std::string expiry_item;  // which one: "tcb_info.nextUpdate", "pck_crl.nextUpdate", ...
  bool expired = false;     // expires_at has passed (core clock)
  int64_t tcb_evaluation_data_number = 0;
  std::array<uint8_t, 32> content_sha256{};  // tdx::CollateralDigest
  std::string origin;  // upstream URL, "bundle:<what>", or "cache-dir" when unknown
};

struct CacheStatus {
  std::vector<CachedCollateral> entries;
  std::string upstream_name;  // PCS/PCCS base URL; empty when none
  uint64_t hits = 0;          // verifications whose collateral needed no fetch or re-verification
  uint64_t misses = 0;
  std::optional<absl::Time> last_refresh_time;
  std::string last_refresh_error;
};

struct RefreshInput {
  // Empty (and no import): every cached item.
  std::vector<tdx::Fmspc> fmspcs;
  // A collateral.json document to import instead of fetching.
  std::optional<std::string> import_json;
  // Refetch items that are not near expiry too.
  bool force = false;
};

struct RefreshFailure {
  std::string key;  // FMSPC hex
  std::string reason;
};

struct RefreshResult {
  std::vector<CachedCollateral> refreshed;
  std::vector<RefreshFailure> failures;
};

struct VerifierCoreOptions {
  tdx::TrustAnchors anchors;
  // Cache directory ("" = none); created (0700) if missing.
  std::string cache_dir;
  // Upstream collateral source (Intel PCS / PCCS, or a fake in tests); may be null.
  std::unique_ptr<tdx::CollateralSource> upstream;
  // Shown in the cache status and as the origin of fetched items (the PCS base URL).
  std::string upstream_name;
  // Verifications never use the upstream (Refresh still may, when asked).
  bool offline = false;
  // The cache refetches an item this long before its earliest nextUpdate; Refresh without
  // `force` skips items not within it.
  absl::Duration refresh_margin = absl::Hours(1);
  tdx::Verifier::Options verifier;
};

class VerifierCore {
 public:
  // `clock` must outlive the core. `registry` (may be null) receives the pml_verifier_* metric
  // families; it must outlive the core. kInvalidArgument / file errors when the cache directory
  // cannot be created.
  static absl::StatusOr<std::unique_ptr<VerifierCore>> Create(VerifierCoreOptions options,
                                                              const core::Clock& clock,
                                                              prometheus::Registry* registry);
  ~VerifierCore();
  VerifierCore(const VerifierCore&) = delete;
  VerifierCore& operator=(const VerifierCore&) = delete;

  // Parses and verifies one quote (errors and results: see the top of this file). Records the
  // metrics.
  absl::StatusOr<TdxVerification> VerifyTdx(const TdxVerifyInput& input);

  // What the cache directory holds and the verifier's cache counters. Files that do not parse are
  // skipped.
  CacheStatus GetCacheStatus() const;

  // Imports `import_json` into the cache, or refetches cached items (or `fmspcs`) from the
  // upstream. kFailedPrecondition when there is no cache directory, or when fetching is asked
  // for without an upstream; kInvalidArgument naming import_collateral_json when the bundle does
  // not parse. Per-item upstream failures are reported in the result, not as errors. After a
  // change the verifier's caches are cleared, so the new collateral is used at once. The import
  // checks structure only; every signature is checked when the collateral is used.
  absl::StatusOr<RefreshResult> Refresh(const RefreshInput& input);

  const tdx::TrustAnchors& anchors() const { return strict_.anchors(); }
  tdx::Verifier::CacheStats cache_stats() const { return strict_.cache_stats(); }

 private:
  class CountingSource;
  class RequestSource;
  struct Sources {
    std::shared_ptr<tdx::CollateralSource> online;   // may use the upstream
    std::shared_ptr<tdx::CollateralSource> offline;  // never does; null without a cache dir
  };
  struct Metrics;

  VerifierCore(VerifierCoreOptions options, const core::Clock& clock,
               prometheus::Registry* registry);
  absl::Status RebuildSources();
  absl::StatusOr<TdxVerification> VerifyParsed(const TdxVerifyInput& input, tdx::Quote quote,
                                               absl::Time at);
  absl::StatusOr<CachedCollateral> Describe(const std::string& file_name,
                                            const tdx::Collateral& c) const;
  absl::StatusOr<CachedCollateral> Store(const tdx::Collateral& c, const std::string& origin);
  void RecordOutcome(absl::string_view result, absl::string_view tcb_status, double seconds);
  void MirrorCacheStats();

  const VerifierCoreOptions options_;
  const core::Clock& clock_;
  // Strict: expired collateral is a failure. Lenient (QvE semantics): used only to report the
  // TCB evaluation of a quote whose sole failure was collateral time.
  tdx::Verifier strict_;
  tdx::Verifier lenient_;
  std::atomic<uint64_t> network_fetches_{0};
  std::unique_ptr<Metrics> metrics_;

  mutable absl::Mutex mu_;
  Sources sources_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> origins_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> last_refresh_time_ ABSL_GUARDED_BY(mu_);
  std::string last_refresh_error_ ABSL_GUARDED_BY(mu_);

  absl::Mutex mirror_mu_;
  tdx::Verifier::CacheStats mirrored_ ABSL_GUARDED_BY(mirror_mu_);
};

}  // namespace pml::attestation
