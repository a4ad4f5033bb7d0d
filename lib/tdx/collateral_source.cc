#include "lib/tdx/collateral_source.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"
#include "lib/tdx/tcb_info.h"

namespace pml::tdx {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxBundleFile = 64 << 20;

struct Keyed {
  Collateral collateral;
  Fmspc fmspc{};
  bool tdx = false;
  std::optional<PckCaType> ca;
};

absl::StatusOr<Keyed> KeyOf(Collateral c) {
  Keyed k;
  PML_ASSIGN_OR_RETURN(TcbInfo info, ParseTcbInfo(c.tcb_info_body));
  k.fmspc = info.fmspc;
  k.tdx = info.is_tdx();
  auto crl = crypto::ParseCrl(c.pck_crl);
  if (crl.ok()) {
    const std::string cn = crypto::CommonName(*X509_CRL_get_issuer(crl->get()));
    if (absl::StrContains(cn, "Platform")) k.ca = PckCaType::kPlatform;
    if (absl::StrContains(cn, "Processor")) k.ca = PckCaType::kProcessor;
  }
  k.collateral = std::move(c);
  return k;
}

class BundleFileSource final : public CollateralSource {
 public:
  BundleFileSource(std::vector<Keyed> entries, bool single)
      : entries_(std::move(entries)), single_(single) {}

  absl::StatusOr<Collateral> GetCollateral(const Fmspc& fmspc, PckCaType ca,
                                           bool is_tdx) override {
    if (single_) return entries_.front().collateral;
    for (const Keyed& k : entries_) {
      if (k.fmspc == fmspc && k.tdx == is_tdx && (!k.ca.has_value() || *k.ca == ca)) {
        return k.collateral;
      }
    }
    return absl::NotFoundError(absl::StrCat("bundle has no ", is_tdx ? "tdx" : "sgx",
                                            " collateral for fmspc ", core::HexEncode(fmspc),
                                            " ca ", PckCaTypeName(ca)));
  }

 private:
  const std::vector<Keyed> entries_;  // immutable after construction: no lock needed
  const bool single_;
};

class CacheDirSource final : public CollateralSource {
 public:
  CacheDirSource(CacheDirOptions options, const core::Clock& clock)
      : options_(std::move(options)), clock_(clock) {}

  absl::StatusOr<Collateral> GetCollateral(const Fmspc& fmspc, PckCaType ca,
                                           bool is_tdx) override {
    const std::string name = CollateralCacheFileName(fmspc, ca, is_tdx);
    const absl::Time now = clock_.Now();
    std::optional<Entry> stale;
    {
      absl::MutexLock lock(&mu_);
      auto it = memory_.find(name);
      if (it != memory_.end()) {
        if (Fresh(it->second, now)) return it->second.collateral;
        stale = it->second;
      }
    }
    const std::string path = absl::StrCat(options_.dir, "/", name);
    if (!stale.has_value() && core::PathExists(path)) {
      auto loaded = LoadCollateralJsonFile(path);
      if (loaded.ok()) {
        auto next = CollateralNextUpdate(*loaded);
        if (next.ok()) {
          Entry e{std::move(loaded).value(), *next};
          Remember(name, e);
          if (Fresh(e, now)) return e.collateral;
          stale = std::move(e);
        }
      }
      // An unreadable cache file is treated as a miss; the upstream copy replaces it.
    }
    if (options_.upstream != nullptr) {
      auto fetched = options_.upstream->GetCollateral(fmspc, ca, is_tdx);
      if (fetched.ok()) {
        PML_ASSIGN_OR_RETURN(absl::Time next, CollateralNextUpdate(*fetched));
        PML_ASSIGN_OR_RETURN(std::string json, CollateralToJson(*fetched));
        PML_RETURN_IF_ERROR(core::WriteFileAtomic(path, json));
        Entry e{std::move(fetched).value(), next};
        Remember(name, e);
        return e.collateral;
      }
      if (!stale.has_value()) return fetched.status();
    }
    if (stale.has_value()) return stale->collateral;
    return absl::NotFoundError(absl::StrCat("no cached collateral ", name, " and no upstream"));
  }

 private:
  struct Entry {
    Collateral collateral;
    absl::Time next_update;
  };
  bool Fresh(const Entry& e, absl::Time now) const {
    return now + options_.refresh_margin < e.next_update;
  }
  void Remember(const std::string& name, const Entry& e) {
    absl::MutexLock lock(&mu_);
    memory_.insert_or_assign(name, e);
  }

  const CacheDirOptions options_;
  const core::Clock& clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> memory_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::string CollateralCacheFileName(const Fmspc& fmspc, PckCaType ca, bool is_tdx) {
  return absl::StrCat(is_tdx ? "tdx" : "sgx", "-", PckCaTypeName(ca), "-",
                      core::HexEncode(fmspc), ".json");
}

absl::StatusOr<absl::Time> CollateralNextUpdate(const Collateral& c) {
  PML_ASSIGN_OR_RETURN(TcbInfo tcb, ParseTcbInfo(c.tcb_info_body));
  PML_ASSIGN_OR_RETURN(QeIdentity qe, ParseQeIdentity(c.qe_identity_body));
  absl::Time next = std::min(tcb.next_update, qe.next_update);
  for (const std::vector<uint8_t>* der : {&c.pck_crl, &c.root_ca_crl}) {
    PML_ASSIGN_OR_RETURN(crypto::X509CrlPtr crl, crypto::ParseCrl(*der));
    PML_ASSIGN_OR_RETURN(crypto::CrlTimes t, crypto::CrlValidity(*crl));
    next = std::min(next, t.next_update);
  }
  return next;
}

absl::StatusOr<std::unique_ptr<CollateralSource>> MakeBundleFileSource(absl::string_view path) {
  PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path, kMaxBundleFile));
  const Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("bundle ", path, " is not json"));
  }
  std::vector<Keyed> entries;
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      std::string item;
      try {
        item = j[i].dump();
      } catch (const Json::exception& e) {
        return absl::InvalidArgumentError(absl::StrCat("bundle entry ", i, ": ", e.what()));
      }
      PML_ASSIGN_OR_RETURN(Collateral c, ParseCollateralJson(item));
      PML_ASSIGN_OR_RETURN(Keyed k, KeyOf(std::move(c)));
      entries.push_back(std::move(k));
    }
    if (entries.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("bundle ", path, " is empty"));
    }
    return std::make_unique<BundleFileSource>(std::move(entries), /*single=*/false);
  }
  PML_ASSIGN_OR_RETURN(Collateral c, ParseCollateralJson(text));
  Keyed k;
  k.collateral = std::move(c);
  entries.push_back(std::move(k));
  return std::make_unique<BundleFileSource>(std::move(entries), /*single=*/true);
}

absl::StatusOr<std::unique_ptr<CollateralSource>> MakeCacheDirSource(CacheDirOptions options,
                                                                     const core::Clock& clock) {
  if (options.dir.empty()) return absl::InvalidArgumentError("cache dir is empty");
  PML_RETURN_IF_ERROR(core::MakeDirs(options.dir, 0700));
  return std::make_unique<CacheDirSource>(std::move(options), clock);
}

}  // namespace pml::tdx
