#pragma once
// DCAP verification of TDX (v4/v5) and SGX (v3/v5) quotes with Intel QVL semantics
// (shared/specs/tdx-quote-verification.md §5-§7): PCK chain to a pinned root key, both CRLs, TCB
// info and QE identity signatures over their exact bytes and their chains, FMSPC/PCEID binding,
// QE report signature and report data, QE identity, TDX module identity, quote signature, TCB
// level selection (with the TDX module rules) and Intel's status convergence.
//
// Outcomes:
//   - OK + VerifiedQuote: every signature and binding holds. The TCB status (UpToDate,
//     OutOfDate, Revoked, ...) is a *result* for policy to judge, not an error.
//   - kFailedPrecondition "<CLASS>: <detail>": verification refused the quote; CLASS is Intel's
//     status name (errors.h), e.g. INVALID_QUOTE_SIGNATURE, TCB_INFO_MISMATCH,
//     SGX_PCK_CERT_CHAIN_UNTRUSTED, TCB_NOT_SUPPORTED, SGX_CRL_EXPIRED.
//   - kInvalidArgument "<CLASS>: <detail>": malformed quote or collateral.
//
// Collateral time (§7): by default an expired item (T > nextUpdate / notAfter) fails with its
// expiry class (SGX_CRL_EXPIRED, SGX_TCB_INFO_EXPIRED, ... — all in the COLLATERAL_EXPIRED
// family, see MatchesErrorClass) and an item not yet valid (T < issueDate / thisUpdate /
// notBefore) with COLLATERAL_NOT_YET_VALID; the message names the bounding item. With
// VerifyOptions::allow_expired_collateral the verifier behaves like QvE: it goes on, and the
// result's collateral_time_status() reports it. Either way the result carries the validity window.
//
// Speed: the collateral part (chains, CRLs, TCB info / QE identity signatures; ~6 ECDSA checks)
// depends only on the collateral and is cached by its exact content; the PCK chain is cached by
// its exact PEM bytes, parsed certificates by their PEM text. With both warm, a verification
// computes two ECDSA checks (QE report and quote). Time checks and revocation lookups are redone
// on every call (they are cheap). A cold verification (empty caches) computes nine (ten when the
// anchor was given as a bare key, so that the root certificate's self-signature is checked too).
//
// Thread-safety: VerifyQuote is pure. Verifier is thread-safe (caches under an absl::Mutex).

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/pck_cert.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/tcb_info.h"
#include "lib/tdx/trust_anchors.h"

namespace pml::tdx {

class CollateralSource;
namespace internal {
class VerifierCore;
struct PckChainResult;
struct CollateralResult;
}  // namespace internal

struct VerifyOptions {
  // false (default): expired / not-yet-valid collateral is an error (see above).
  // true: QvE semantics — verification continues and the result reports it.
  bool allow_expired_collateral = false;
};

enum class CollateralTimeStatus { kValid, kExpired, kNotYetValid };
absl::string_view CollateralTimeStatusName(CollateralTimeStatus s);

// Where the collateral is valid: the latest start and the earliest end over every item (TCB
// info, QE identity, both CRLs, every certificate of the four chains), with the item that sets
// each bound ("qe_identity.issueDate", "pck_crl.nextUpdate", "pck_cert.notAfter", ...).
struct CollateralWindow {
  absl::Time not_before = absl::InfinitePast();
  std::string not_before_item;
  absl::Time not_after = absl::InfiniteFuture();
  std::string not_after_item;
};

// Where an advisory id came from (§6.6).
enum class AdvisorySource { kTcbLevel, kTdxModule, kQeIdentity };
struct Advisory {
  std::string id;
  AdvisorySource source;
  friend bool operator==(const Advisory&, const Advisory&) = default;
};

// The result of a successful verification. Only the verifier constructs one.
class VerifiedQuote {
 public:
  VerifiedQuote(const VerifiedQuote&) = default;
  VerifiedQuote(VerifiedQuote&&) = default;
  VerifiedQuote& operator=(const VerifiedQuote&) = default;
  VerifiedQuote& operator=(VerifiedQuote&&) = default;

  const Quote& quote() const { return quote_; }
  // Converged status (Intel QVL): what QvE reports.
  TcbStatus tcb_status() const { return tcb_status_; }
  // The matched TCB level's advisoryIDs (QvE's sa_list; the TDX-matched level for TDX).
  const std::vector<std::string>& advisory_ids() const { return advisory_ids_; }
  // Deduplicated union of TCB level, TDX module level and QE level advisories, with sources.
  const std::vector<Advisory>& all_advisories() const { return all_advisories_; }
  // tcbDate of the matched TCB level.
  absl::Time tcb_date() const { return tcb_date_; }
  // Status of the matched TCB info level before convergence (SGX level for SGX quotes, TDX
  // level for TDX quotes), of the TDX module identity level (nullopt when TEE_TCB_SVN[1] == 0),
  // and of the QE identity level.
  TcbStatus tcb_level_status() const { return tcb_level_status_; }
  std::optional<TcbStatus> tdx_module_status() const { return tdx_module_status_; }
  TcbStatus qe_tcb_status() const { return qe_tcb_status_; }
  int64_t tcb_evaluation_data_number() const { return tcb_evaluation_data_number_; }

  // From the verified PCK certificate.
  const PckCertInfo& pck() const { return pck_; }
  const Fmspc& fmspc() const { return pck_.fmspc; }
  PckCaType pck_ca_type() const { return pck_ca_type_; }

  const CollateralWindow& collateral_window() const { return window_; }
  CollateralTimeStatus collateral_time_status() const { return time_status_; }
  // QvE's collateral_expiration_status: true unless the collateral was valid at the time.
  bool collateral_expired() const { return time_status_ != CollateralTimeStatus::kValid; }

  // True iff the chain was anchored at a TrustAnchor marked simulated.
  bool simulated() const { return simulated_; }
  const std::string& trust_anchor_name() const { return trust_anchor_name_; }
  absl::Time verified_at() const { return verified_at_; }

 private:
  friend class internal::VerifierCore;
  VerifiedQuote() = default;

  Quote quote_;
  TcbStatus tcb_status_ = TcbStatus::kUpToDate;
  std::vector<std::string> advisory_ids_;
  std::vector<Advisory> all_advisories_;
  absl::Time tcb_date_;
  TcbStatus tcb_level_status_ = TcbStatus::kUpToDate;
  std::optional<TcbStatus> tdx_module_status_;
  TcbStatus qe_tcb_status_ = TcbStatus::kUpToDate;
  int64_t tcb_evaluation_data_number_ = 0;
  PckCertInfo pck_;
  PckCaType pck_ca_type_ = PckCaType::kPlatform;
  CollateralWindow window_;
  CollateralTimeStatus time_status_ = CollateralTimeStatus::kValid;
  bool simulated_ = false;
  std::string trust_anchor_name_;
  absl::Time verified_at_;
};

// Verifies `quote` against `collateral` and `anchors` at time `now`. Pure: no caches kept
// between calls, no I/O. Errors as described at the top of this file.
absl::StatusOr<VerifiedQuote> VerifyQuote(const Quote& quote, const Collateral& collateral,
                                          const TrustAnchors& anchors, absl::Time now,
                                          const VerifyOptions& options = {});

// A verifier with caches: the same checks as VerifyQuote, but collateral verification results
// (keyed by the collateral's exact content), PCK chain results (keyed by the chain's exact PEM
// bytes), parsed certificates, signature checks of certificate links, attestation keys, and
// collateral fetched from a CollateralSource (keyed by FMSPC, CA type and TEE, until its
// earliest expiry) are reused. Only successful results are cached; every cache is bounded
// (an arbitrary entry is evicted when full). Cached results never skip a check that depends on
// `now` or on the quote.
class Verifier {
 public:
  struct Options {
    VerifyOptions verify;
    size_t max_pck_chains = 4096;
    size_t max_collaterals = 256;
    size_t max_attestation_keys = 4096;
    // Collateral from a CollateralSource is reused until its earliest expiry; past that it is
    // fetched again, but not more often than this (a source with only stale collateral would
    // otherwise be asked on every quote).
    absl::Duration source_refetch_interval = absl::Minutes(1);
  };

  struct CacheStats {
    uint64_t pck_chain_hits = 0;
    uint64_t pck_chain_misses = 0;
    uint64_t collateral_hits = 0;
    uint64_t collateral_misses = 0;
    uint64_t source_hits = 0;    // collateral served from the per-FMSPC map
    uint64_t source_fetches = 0; // calls to CollateralSource::GetCollateral
    size_t pck_chains = 0;
    size_t collaterals = 0;
  };

  explicit Verifier(TrustAnchors anchors) : Verifier(std::move(anchors), Options{}) {}
  Verifier(TrustAnchors anchors, Options options);
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  absl::StatusOr<VerifiedQuote> Verify(const Quote& quote, const Collateral& collateral,
                                       absl::Time now);
  // Parses, then verifies.
  absl::StatusOr<VerifiedQuote> Verify(absl::Span<const uint8_t> quote_bytes,
                                       const Collateral& collateral, absl::Time now);
  // Gets the collateral for the quote's FMSPC / CA type / TEE from `source` (or from the
  // per-FMSPC map while it has not expired at `now`) and verifies. Errors from the source keep
  // their code (kUnavailable, kNotFound, ...).
  absl::StatusOr<VerifiedQuote> Verify(absl::Span<const uint8_t> quote_bytes,
                                       CollateralSource& source, absl::Time now);

  CacheStats cache_stats() const;
  void ClearCaches();
  const TrustAnchors& anchors() const;

 private:
  std::unique_ptr<internal::VerifierCore> core_;
};

}  // namespace pml::tdx
