#include "services/attestation/verifier_core.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/tcb_info.h"
// Only the simulated root's public key constant (a header-only value): the verifier never links
// the simulator (STYLE.md §1).
#include "lib/tdx/simulated_anchor.h"

namespace pml::attestation {
namespace {

// Answers every request with kNotFound: the source of a verifier with no cache (and, for offline
// requests, no usable upstream). The tdx::Verifier's in-memory per-FMSPC map is still consulted
// first, so collateral seen earlier keeps serving.
class NullSource final : public tdx::CollateralSource {
 public:
  explicit NullSource(std::string why) : why_(std::move(why)) {}
  absl::StatusOr<tdx::Collateral> GetCollateral(const tdx::Fmspc&, tdx::PckCaType, bool) override {
    return absl::NotFoundError(why_);
  }

 private:
  const std::string why_;
};

absl::StatusOr<tdx::PckCaType> CaTypeOfPckCrl(const tdx::Collateral& c) {
  auto crl = crypto::ParseCrl(c.pck_crl);
  if (!crl.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("pck_crl: ", crl.status().message()));
  }
  const std::string cn = crypto::CommonName(*X509_CRL_get_issuer(crl->get()));
  if (absl::StrContains(cn, "Platform")) {
    return tdx::PckCaType::kPlatform;
  }
  if (absl::StrContains(cn, "Processor")) {
    return tdx::PckCaType::kProcessor;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("pck_crl: issuer \"", cn.substr(0, 64),
                   "\" is neither a PCK Platform CA nor a PCK Processor CA"));
}

absl::Time FileMtime(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::InfinitePast();
  }
  return absl::TimeFromTimespec(st.st_mtim);
}

// The dstack runtime events that name the app (shared/specs/dstack-compat.md §3.3), as the boot
// sequence writes them (see LogAppInfo).
LogAppInfo AppInfoFromLog(const tdx::EventLog& log) {
  LogAppInfo info;
  bool boot_done = false;
  bool seen_app = false, seen_compose = false, seen_instance = false, seen_os = false,
       seen_kp = false;
  auto take = [&](bool& seen, std::vector<uint8_t>& field, const tdx::EventLogEntry& e,
                  bool before_boot_done) {
    if (seen) {
      if (info.error.empty())
        info.error = absl::StrCat("the event log has more than one ", e.event, " event");
      return;
    }
    if (before_boot_done && boot_done) {
      if (info.error.empty())
        info.error = absl::StrCat("the event log has a ", e.event, " event after boot-mr-done");
      return;
    }
    seen = true;
    field = e.payload;
  };
  for (const tdx::EventLogEntry& e : log.entries) {
    if (!e.digest_verified || e.imr != 3) {
      continue;
    }
    if (e.event == "app-id") {
      take(seen_app, info.app_id, e, true);
    } else if (e.event == "compose-hash") {
      take(seen_compose, info.compose_hash, e, true);
    } else if (e.event == "instance-id") {
      take(seen_instance, info.instance_id, e, true);
    } else if (e.event == "os-image-hash") {
      // dstack writes it after boot-mr-done (the KMS returns it) and before key-provider.
      if (seen_kp) {
        if (info.error.empty())
          info.error = "the event log has an os-image-hash event after key-provider";
      } else {
        take(seen_os, info.os_image_hash, e, false);
      }
    } else if (e.event == "key-provider") {
      std::vector<uint8_t> kp;
      take(seen_kp, kp, e, false);
      if (!kp.empty())
        info.key_provider_info = core::ToString(kp);
    } else if (e.event == "boot-mr-done") {
      boot_done = true;
    }
  }
  return info;
}

EventLogReplayResult Replay(absl::string_view json, const tdx::Quote& quote) {
  EventLogReplayResult out;
  if (!quote.td_report.has_value()) {
    out.error = "the quote has no TD report (SGX quote): nothing to replay against";
    return out;
  }
  auto log = tdx::ParseEventLog(json);
  if (!log.ok()) {
    out.error = std::string{log.status().message()};
    return out;
  }
  const tdx::RtmrReplay r = tdx::ReplayAgainst(*log, *quote.td_report);
  out.matches = r.all_match();
  out.replayed = r.rtmr;
  for (uint32_t i = 0; i < 4; ++i) {
    if (!r.matches[i]) {
      out.mismatched.push_back(i);
    }
  }
  out.event_count = log->entries.size();
  for (const auto& e : log->entries) {
    if (e.imr < 4)
      ++out.events_per_rtmr[e.imr];
  }
  out.app_info = AppInfoFromLog(*log);
  return out;
}

}  // namespace

absl::StatusOr<tdx::TrustAnchors> MakeTrustAnchors(bool trust_simulated_tee) {
  tdx::TrustAnchors anchors = tdx::TrustAnchors::IntelDefault();
  if (trust_simulated_tee) {
    absl::Status s = anchors.AddPublicKeyPem(tdx::kSimulatedTdxRootPublicKeyPem,
                                             kSimulatedRootAnchorName, /*simulated=*/true);
    if (!s.ok()) {
      return absl::InternalError(absl::StrCat("simulated root key: ", s.message()));
    }
  }
  return anchors;
}

// Wraps the upstream so a fetch can be told apart from a cache hit.
class VerifierCore::CountingSource final : public tdx::CollateralSource {
 public:
  CountingSource(tdx::CollateralSource& inner, std::atomic<uint64_t>& fetches)
      : inner_(inner), fetches_(fetches) {}
  absl::StatusOr<tdx::Collateral> GetCollateral(const tdx::Fmspc& fmspc, tdx::PckCaType ca,
                                                bool is_tdx) override {
    fetches_.fetch_add(1, std::memory_order_relaxed);
    return inner_.GetCollateral(fmspc, ca, is_tdx);
  }

 private:
  tdx::CollateralSource& inner_;
  std::atomic<uint64_t>& fetches_;
};

// Per request: records whether the verifier asked the source, whether that reached the upstream
// (the shared counter moved; a concurrent request's fetch can be attributed here too, which only
// affects the reported origin), and the source's own error, so a collateral failure is told apart
// from a verification failure.
class VerifierCore::RequestSource final : public tdx::CollateralSource {
 public:
  RequestSource(tdx::CollateralSource& inner, const std::atomic<uint64_t>& fetches)
      : inner_(inner), fetches_(fetches) {}
  absl::StatusOr<tdx::Collateral> GetCollateral(const tdx::Fmspc& fmspc, tdx::PckCaType ca,
                                                bool is_tdx) override {
    const uint64_t before = fetches_.load(std::memory_order_relaxed);
    auto r = inner_.GetCollateral(fmspc, ca, is_tdx);
    network_ = network_ || fetches_.load(std::memory_order_relaxed) != before;
    fmspc_ = fmspc;
    if (!r.ok()) {
      error_ = r.status();
    }
    return r;
  }
  bool FetchedFromNetwork() const { return network_; }
  const std::optional<absl::Status>& SourceError() const { return error_; }
  const tdx::Fmspc& RequestedFmspc() const { return fmspc_; }

 private:
  tdx::CollateralSource& inner_;
  const std::atomic<uint64_t>& fetches_;
  bool network_ = false;
  tdx::Fmspc fmspc_{};
  std::optional<absl::Status> error_;
};

struct VerifierCore::Metrics {
  prometheus::Family<prometheus::Counter>* verifications = nullptr;
  prometheus::Histogram* seconds = nullptr;
  prometheus::Counter* collateral_hits = nullptr;
  prometheus::Counter* collateral_misses = nullptr;
  prometheus::Counter* pck_chain_hits = nullptr;
  prometheus::Counter* pck_chain_misses = nullptr;
};

absl::StatusOr<std::unique_ptr<VerifierCore>> VerifierCore::Create(VerifierCoreOptions options,
                                                                   const core::Clock& clock,
                                                                   prometheus::Registry* registry) {
  if (!options.cache_dir.empty()) {
    PML_RETURN_IF_ERROR(core::MakeDirs(options.cache_dir, 0700));
  }
  std::unique_ptr<VerifierCore> core(new VerifierCore(std::move(options), clock, registry));
  PML_RETURN_IF_ERROR(core->RebuildSources());
  return core;
}

VerifierCore::VerifierCore(VerifierCoreOptions options, const core::Clock& clock,
                           prometheus::Registry* registry)
    : options_(std::move(options)),
      clock_(clock),
      strict_(options_.anchors, options_.verifier),
      lenient_(options_.anchors,
               [&] {
                 tdx::Verifier::Options o = options_.verifier;
                 o.verify.allow_expired_collateral = true;
                 return o;
               }()),
      metrics_(std::make_unique<Metrics>()) {
  if (registry == nullptr) {
    return;
  }
  metrics_->verifications =
      &prometheus::BuildCounter()
           .Name("pml_verifier_tdx_verifications_total")
           .Help(
               "TDX/SGX quote verifications by result (verified, rejected, invalid, "
               "unavailable) and converged TCB status (Intel's name, or none).")
           .Register(*registry);
  metrics_->seconds = &prometheus::BuildHistogram()
                           .Name("pml_verifier_tdx_verification_seconds")
                           .Help("Time to parse and verify one quote, collateral fetch included.")
                           .Register(*registry)
                           .Add({}, prometheus::Histogram::BucketBoundaries{
                                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  auto& hits = prometheus::BuildCounter()
                   .Name("pml_verifier_collateral_cache_hits_total")
                   .Help(
                       "Verifications that reused a cached verified result: cache=collateral "
                       "(TCB info, QE identity, CRLs and their chains) or cache=pck_chain.")
                   .Register(*registry);
  auto& misses = prometheus::BuildCounter()
                     .Name("pml_verifier_collateral_cache_misses_total")
                     .Help(
                         "Verifications that had to verify collateral (cache=collateral) or a "
                         "PCK chain (cache=pck_chain) afresh.")
                     .Register(*registry);
  metrics_->collateral_hits = &hits.Add({{"cache", "collateral"}});
  metrics_->pck_chain_hits = &hits.Add({{"cache", "pck_chain"}});
  metrics_->collateral_misses = &misses.Add({{"cache", "collateral"}});
  metrics_->pck_chain_misses = &misses.Add({{"cache", "pck_chain"}});
}

VerifierCore::~VerifierCore() = default;

absl::Status VerifierCore::RebuildSources() {
  Sources s;
  if (!options_.cache_dir.empty()) {
    tdx::CacheDirOptions off;
    off.dir = options_.cache_dir;
    off.refresh_margin = options_.refresh_margin;
    PML_ASSIGN_OR_RETURN(s.offline, tdx::MakeCacheDirSource(std::move(off), clock_));
    if (options_.upstream != nullptr && !options_.offline) {
      tdx::CacheDirOptions on;
      on.dir = options_.cache_dir;
      on.refresh_margin = options_.refresh_margin;
      on.upstream = std::make_unique<CountingSource>(*options_.upstream, network_fetches_);
      PML_ASSIGN_OR_RETURN(s.online, tdx::MakeCacheDirSource(std::move(on), clock_));
    } else {
      s.online = s.offline;
    }
  } else {
    s.offline = std::make_shared<NullSource>(
        "the request carries no collateral and the verifier has no collateral cache "
        "(--collateral-cache-dir)");
    if (options_.upstream != nullptr && !options_.offline) {
      s.online = std::make_shared<CountingSource>(*options_.upstream, network_fetches_);
    } else {
      s.online = std::make_shared<NullSource>(
          "the request carries no collateral and the verifier has neither a collateral cache "
          "(--collateral-cache-dir) nor an online PCS (--pcs-url without --offline)");
    }
  }
  absl::MutexLock lock(&mu_);
  sources_ = std::move(s);
  return absl::OkStatus();
}

absl::StatusOr<TdxVerification> VerifierCore::VerifyTdx(const TdxVerifyInput& input) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const absl::Time at = input.at.value_or(clock_.Now());
  if (input.quote.empty()) {
    RecordOutcome("invalid", "none", seconds());
    return absl::InvalidArgumentError("quote: empty");
  }
  auto quote = tdx::ParseQuote(input.quote);
  if (!quote.ok()) {
    RecordOutcome("invalid", "none", seconds());
    return absl::InvalidArgumentError(absl::StrCat("quote: ", quote.status().message()));
  }
  auto result = VerifyParsed(input, std::move(quote).value(), at);
  if (!result.ok()) {
    RecordOutcome("unavailable", "none", seconds());
    return result.status();
  }
  const absl::string_view tcb = result->evaluation.has_value()
                                    ? tdx::TcbStatusName(result->evaluation->tcb_status())
                                    : absl::string_view("none");
  RecordOutcome(result->verified ? "verified" : "rejected", tcb, seconds());
  if (!input.event_log.empty()) {
    result->event_log = Replay(input.event_log, result->quote);
  }
  return result;
}

absl::StatusOr<TdxVerification> VerifierCore::VerifyParsed(const TdxVerifyInput& input,
                                                           tdx::Quote quote, absl::Time at) {
  TdxVerification out;
  out.verification_time = at;
  absl::StatusOr<tdx::VerifiedQuote> v = absl::UnknownError("not run");
  std::shared_ptr<tdx::CollateralSource> source;
  if (input.collateral.has_value()) {
    out.collateral_origin = CollateralOrigin::kRequest;
    v = strict_.Verify(quote, *input.collateral, at);
  } else {
    {
      absl::MutexLock lock(&mu_);
      source = input.offline ? sources_.offline : sources_.online;
    }
    RequestSource rs(*source, network_fetches_);
    v = strict_.Verify(input.quote, rs, at);
    out.collateral_origin =
        rs.FetchedFromNetwork() ? CollateralOrigin::kNetwork : CollateralOrigin::kCache;
    if (!v.ok() && rs.SourceError().has_value() && *rs.SourceError() == v.status()) {
      // The collateral could not be obtained: an error of the call, not a verdict on the quote.
      const std::string what =
          absl::StrCat("collateral for fmspc ", core::HexEncode(rs.RequestedFmspc()), ": ",
                       v.status().message());
      const bool no_network = input.offline || options_.offline || options_.upstream == nullptr;
      if (no_network || absl::IsNotFound(v.status()) || absl::IsPermissionDenied(v.status())) {
        return absl::FailedPreconditionError(what);
      }
      return absl::UnavailableError(what);
    }
  }
  if (v.ok()) {
    out.verified = true;
    out.evaluation = std::move(v).value();
    out.quote = std::move(quote);
    return out;
  }
  if (tdx::ErrorClass(v.status()).empty()) {
    return v.status();  // not a verdict (kInternal)
  }
  out.verified = false;
  out.error_class = tdx::ErrorClass(v.status());
  out.error_message = std::string{v.status().message()};
  out.collateral_time_error = tdx::IsCollateralTimeError(v.status());
  if (out.collateral_time_error) {
    // QvE semantics for the report: the TCB evaluation still runs, the expiry stays the verdict.
    absl::StatusOr<tdx::VerifiedQuote> lenient = absl::UnknownError("not run");
    if (input.collateral.has_value()) {
      lenient = lenient_.Verify(quote, *input.collateral, at);
    } else {
      RequestSource rs(*source, network_fetches_);
      lenient = lenient_.Verify(input.quote, rs, at);
    }
    if (lenient.ok()) {
      out.evaluation = std::move(lenient).value();
    } else if (!tdx::IsCollateralTimeError(lenient.status()) &&
               !tdx::ErrorClass(lenient.status()).empty()) {
      // lib/tdx checks time first and the time class stays the verdict (as the vectors expect),
      // but a quote broken beyond that must not hide behind the expiry: say so.
      absl::StrAppend(&out.error_message, "; also ", lenient.status().message());
    }
  }
  out.quote = std::move(quote);
  return out;
}

void VerifierCore::RecordOutcome(absl::string_view result, absl::string_view tcb_status,
                                 double seconds) {
  if (metrics_->verifications == nullptr) {
    return;
  }
  metrics_->verifications
      ->Add({{"result", std::string{result}}, {"tcb_status", std::string{tcb_status}}})
      .Increment();
  metrics_->seconds->Observe(seconds);
  MirrorCacheStats();
}

void VerifierCore::MirrorCacheStats() {
  const tdx::Verifier::CacheStats now = strict_.cache_stats();
  absl::MutexLock lock(&mirror_mu_);
  auto bump = [](prometheus::Counter* c, uint64_t current, uint64_t& last) {
    if (current > last) {
      c->Increment(static_cast<double>(current - last));
    }
    last = std::max(last, current);
  };
  // A hit is a verification whose collateral result was reused, whether found by content
  // (collateral_hits) or through the per-FMSPC map (source_hits).
  bump(metrics_->collateral_hits, now.collateral_hits + now.source_hits, mirrored_.collateral_hits);
  bump(metrics_->collateral_misses, now.collateral_misses, mirrored_.collateral_misses);
  bump(metrics_->pck_chain_hits, now.pck_chain_hits, mirrored_.pck_chain_hits);
  bump(metrics_->pck_chain_misses, now.pck_chain_misses, mirrored_.pck_chain_misses);
}

absl::StatusOr<CachedCollateral> VerifierCore::Describe(const std::string& file_name,
                                                        const tdx::Collateral& c) const {
  CachedCollateral e;
  e.file_name = file_name;
  PML_ASSIGN_OR_RETURN(tdx::TcbInfo tcb, tdx::ParseTcbInfo(c.tcb_info_body));
  PML_ASSIGN_OR_RETURN(tdx::QeIdentity qe, tdx::ParseQeIdentity(c.qe_identity_body));
  PML_ASSIGN_OR_RETURN(e.ca, CaTypeOfPckCrl(c));
  e.fmspc = tcb.fmspc;
  e.is_tdx = tcb.is_tdx();
  e.tcb_evaluation_data_number = tcb.tcb_evaluation_data_number;
  e.expires_at = tcb.next_update;
  e.expiry_item = "tcb_info.nextUpdate";
  auto consider = [&](absl::Time t, absl::string_view item) {
    if (t < e.expires_at) {
      e.expires_at = t;
      e.expiry_item = std::string{item};
    }
  };
  consider(qe.next_update, "qe_identity.nextUpdate");
  for (const auto& [der, item] : {std::pair{&c.pck_crl, "pck_crl.nextUpdate"},
                                  std::pair{&c.root_ca_crl, "root_ca_crl.nextUpdate"}}) {
    PML_ASSIGN_OR_RETURN(crypto::X509CrlPtr crl, crypto::ParseCrl(*der));
    PML_ASSIGN_OR_RETURN(crypto::CrlTimes t, crypto::CrlValidity(*crl));
    consider(t.next_update, item);
  }
  e.expired = clock_.Now() > e.expires_at;
  e.content_sha256 = tdx::CollateralDigest(c);
  e.fetched_at = FileMtime(absl::StrCat(options_.cache_dir, "/", file_name));
  {
    absl::MutexLock lock(&mu_);
    auto it = origins_.find(file_name);
    e.origin = it != origins_.end() ? it->second : "cache-dir";
  }
  return e;
}

CacheStatus VerifierCore::GetCacheStatus() const {
  CacheStatus out;
  out.upstream_name = options_.upstream_name;
  const tdx::Verifier::CacheStats stats = strict_.cache_stats();
  out.hits = stats.collateral_hits + stats.source_hits;
  out.misses = stats.collateral_misses;
  {
    absl::MutexLock lock(&mu_);
    out.last_refresh_time = last_refresh_time_;
    out.last_refresh_error = last_refresh_error_;
  }
  if (options_.cache_dir.empty()) {
    return out;
  }
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& f : std::filesystem::directory_iterator(options_.cache_dir, ec)) {
    const std::string name = f.path().filename().string();
    if (f.is_regular_file(ec) && absl::EndsWith(name, ".json") &&
        (absl::StartsWith(name, "tdx-") || absl::StartsWith(name, "sgx-"))) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    auto c = tdx::LoadCollateralJsonFile(absl::StrCat(options_.cache_dir, "/", name));
    if (!c.ok()) {
      continue;  // the cache source treats it as a miss too
    }
    auto e = Describe(name, *c);
    if (e.ok()) {
      out.entries.push_back(std::move(e).value());
    }
  }
  return out;
}

absl::StatusOr<CachedCollateral> VerifierCore::Store(const tdx::Collateral& c,
                                                     const std::string& origin) {
  PML_ASSIGN_OR_RETURN(tdx::TcbInfo tcb, tdx::ParseTcbInfo(c.tcb_info_body));
  PML_ASSIGN_OR_RETURN(tdx::PckCaType ca, CaTypeOfPckCrl(c));
  const std::string name = tdx::CollateralCacheFileName(tcb.fmspc, ca, tcb.is_tdx());
  PML_ASSIGN_OR_RETURN(std::string json, tdx::CollateralToJson(c));
  PML_RETURN_IF_ERROR(
      core::WriteFileAtomic(absl::StrCat(options_.cache_dir, "/", name), json, 0600));
  {
    absl::MutexLock lock(&mu_);
    origins_.insert_or_assign(name, origin);
  }
  return Describe(name, c);
}

absl::StatusOr<RefreshResult> VerifierCore::Refresh(const RefreshInput& input) {
  if (options_.cache_dir.empty()) {
    return absl::FailedPreconditionError(
        "refresh: the verifier runs without a collateral cache (--collateral-cache-dir)");
  }
  RefreshResult out;
  if (input.import_json.has_value()) {
    auto c = tdx::ParseCollateralJson(*input.import_json);
    if (!c.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("import_collateral_json: ", c.status().message()));
    }
    auto stored = Store(*c, "bundle:request");
    if (!stored.ok()) {
      if (absl::IsInvalidArgument(stored.status())) {
        return absl::InvalidArgumentError(
            absl::StrCat("import_collateral_json: ", stored.status().message()));
      }
      return stored.status();
    }
    out.refreshed.push_back(std::move(stored).value());
  } else {
    if (options_.upstream == nullptr) {
      return absl::FailedPreconditionError(
          "refresh: no upstream to fetch from (--pcs-url); pass import_collateral_json to import "
          "a bundle instead");
    }
    struct Target {
      tdx::Fmspc fmspc;
      tdx::PckCaType ca;
      bool is_tdx;
    };
    std::vector<Target> targets;
    const CacheStatus cached = GetCacheStatus();
    const absl::Time now = clock_.Now();
    auto wanted = [&](const tdx::Fmspc& f) {
      return input.fmspcs.empty() ||
             std::find(input.fmspcs.begin(), input.fmspcs.end(), f) != input.fmspcs.end();
    };
    for (const CachedCollateral& e : cached.entries) {
      if (!wanted(e.fmspc)) {
        continue;
      }
      if (!input.force && now + options_.refresh_margin < e.expires_at) {
        continue;
      }
      targets.push_back({e.fmspc, e.ca, e.is_tdx});
    }
    for (const tdx::Fmspc& f : input.fmspcs) {
      const bool known = std::any_of(cached.entries.begin(), cached.entries.end(),
                                     [&](const CachedCollateral& e) { return e.fmspc == f; });
      // Not cached yet: TDX collateral under the platform CA, what TDX hosts use.
      if (!known) {
        targets.push_back({f, tdx::PckCaType::kPlatform, true});
      }
    }
    for (const Target& t : targets) {
      auto c = options_.upstream->GetCollateral(t.fmspc, t.ca, t.is_tdx);
      absl::StatusOr<CachedCollateral> stored =
          c.ok() ? Store(*c, options_.upstream_name) : absl::StatusOr<CachedCollateral>(c.status());
      if (stored.ok()) {
        out.refreshed.push_back(std::move(stored).value());
      } else {
        out.failures.push_back({absl::AsciiStrToUpper(core::HexEncode(t.fmspc)),
                                std::string{stored.status().message()}});
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    last_refresh_time_ = clock_.Now();
    last_refresh_error_ = out.failures.empty() ? "" : out.failures.front().reason;
  }
  if (!out.refreshed.empty()) {
    // New files must win over the sources' in-memory copies and the verifiers' per-FMSPC maps.
    PML_RETURN_IF_ERROR(RebuildSources());
    strict_.ClearCaches();
    lenient_.ClearCaches();
  }
  return out;
}

}  // namespace pml::attestation
