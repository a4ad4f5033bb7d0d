#include "lib/tdx/verify.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/internal/lite_x509.h"
#include "lib/tdx/internal/p256.h"
#include "lib/tdx/internal/tcb_eval.h"

namespace pml::tdx {
namespace internal {

using CertPtr = std::shared_ptr<const LiteCert>;
using CrlPtr = std::shared_ptr<const LiteCrl>;

// One collateral item's validity, with the names used in messages and the class of its expiry.
struct TimeBound {
  absl::Time start;
  absl::Time end;
  std::string start_name;
  std::string end_name;
  absl::string_view expiry_class;
};

struct PckChainResult {
  std::shared_ptr<const TrustAnchor> anchor;
  CertPtr leaf;
  CertPtr ca;
  CertPtr root;
  PckCertInfo info;
  PckCaType ca_type = PckCaType::kPlatform;
  std::vector<TimeBound> times;
};

struct CollateralResult {
  std::shared_ptr<const TrustAnchor> anchor;
  TcbInfo tcb_info;
  QeIdentity qe_identity;
  CrlPtr pck_crl;
  CrlPtr root_crl;
  std::vector<TimeBound> times;
  CollateralWindow window;  // over `times` only
};

namespace {

absl::Status Refuse(absl::string_view cls, absl::string_view detail) {
  return MakeError(absl::StatusCode::kFailedPrecondition, cls, detail);
}
absl::Status Malformed(absl::string_view cls, absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, cls, detail);
}

std::string Hex(absl::Span<const uint8_t> b) { return core::HexEncode(b).substr(0, 64); }

std::string IsoTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

TimeBound CertTimes(const LiteCert& cert, absl::string_view name, absl::string_view cls) {
  return TimeBound{cert.not_before(), cert.not_after(), absl::StrCat(name, ".notBefore"),
                   absl::StrCat(name, ".notAfter"), cls};
}

TimeBound CrlTimes(const LiteCrl& crl, absl::string_view name) {
  return TimeBound{crl.this_update(), crl.next_update(), absl::StrCat(name, ".thisUpdate"),
                   absl::StrCat(name, ".nextUpdate"), error_class::kCrlExpired};
}

void Widen(CollateralWindow& w, const std::vector<TimeBound>& times) {
  for (const TimeBound& t : times) {
    if (t.start > w.not_before) {
      w.not_before = t.start;
      w.not_before_item = t.start_name;
    }
    if (t.end < w.not_after) {
      w.not_after = t.end;
      w.not_after_item = t.end_name;
    }
  }
}

void AddAdvisories(std::vector<Advisory>& out, const std::vector<std::string>& ids,
                   AdvisorySource source) {
  for (const std::string& id : ids) {
    const bool dup = std::any_of(out.begin(), out.end(),
                                 [&](const Advisory& a) { return a.id == id; });
    if (!dup) out.push_back(Advisory{id, source});
  }
}

// Orders a chain leaf-first (accepting root-first input) and checks that each certificate names
// the next as issuer and that the last is self-issued.
absl::StatusOr<std::vector<CertPtr>> OrderChain(std::vector<CertPtr> certs,
                                                absl::string_view chain_name,
                                                absl::string_view cls) {
  auto linked = [](const std::vector<CertPtr>& c) {
    for (size_t i = 0; i + 1 < c.size(); ++i) {
      if (c[i]->issuer_der() != c[i + 1]->subject_der()) return false;
    }
    return c.back()->IsSelfIssued();
  };
  if (linked(certs)) return certs;
  std::reverse(certs.begin(), certs.end());
  if (linked(certs)) return certs;
  return Refuse(cls, absl::StrCat(chain_name, ": certificates do not form a chain to a "
                                  "self-issued root"));
}

}  // namespace

// The shared implementation behind VerifyQuote and Verifier.
class VerifierCore {
 public:
  VerifierCore(TrustAnchors anchors, Verifier::Options options)
      : anchors_(std::move(anchors)), options_(options), group_(P256Group::Shared()) {}

  absl::StatusOr<VerifiedQuote> Verify(Quote quote, const Collateral* collateral,
                                       CollateralSource* source, absl::Time now);

  Verifier::CacheStats Stats() const {
    absl::MutexLock lock(&mu_);
    Verifier::CacheStats s = stats_;
    s.pck_chains = pck_chains_.size();
    s.collaterals = collaterals_.size();
    return s;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    pck_chains_.clear();
    collaterals_.clear();
    by_fmspc_.clear();
    pck_mru_.clear();
    collateral_mru_.clear();
    att_keys_.clear();
    links_.clear();
    certs_by_pem_.clear();
    qe_reports_.clear();
  }
  const TrustAnchors& anchors() const { return anchors_; }

 private:
  struct SourceKey {
    Fmspc fmspc;
    PckCaType ca;
    bool tdx;
    template <typename H>
    friend H AbslHashValue(H h, const SourceKey& k) {
      return H::combine(std::move(h), k.fmspc, k.ca, k.tdx);
    }
    friend bool operator==(const SourceKey&, const SourceKey&) = default;
  };

  absl::StatusOr<std::shared_ptr<const PckChainResult>> GetPckChain(absl::string_view pem);
  absl::StatusOr<std::shared_ptr<const PckChainResult>> BuildPckChain(absl::string_view pem);
  absl::StatusOr<std::shared_ptr<const CollateralResult>> GetCollateral(const Collateral& c);
  absl::StatusOr<std::shared_ptr<const CollateralResult>> BuildCollateral(const Collateral& c);
  absl::StatusOr<std::shared_ptr<const CollateralResult>> GetFromSource(CollateralSource& source,
                                                                        const SourceKey& key,
                                                                        absl::Time now);
  absl::StatusOr<std::shared_ptr<const P256Key>> GetAttestationKey(const Bytes64& raw);
  // Step 7: the QE report's signature by the PCK key. A platform's QE report is the same in
  // every quote until its attestation key changes, so a verified (PCK certificate, report,
  // signature) triple is remembered by its digest and not verified again.
  bool QeReportVerifies(const PckChainResult& pck, const QuoteSignatureData& sd);
  // Parses a PEM chain into certificates (parsed once per DER digest), requiring `want` of them.
  absl::StatusOr<std::vector<CertPtr>> ParseChain(absl::string_view pem, absl::string_view name,
                                                  size_t want);
  absl::StatusOr<CertPtr> GetCert(std::vector<uint8_t> der);

  // Verifies an ordered chain (leaf first) to an anchor: issuers are CAs, each link verifies,
  // the root is self-signed with an anchor key. Failures use `cls`.
  absl::StatusOr<std::shared_ptr<const TrustAnchor>> VerifyChain(const std::vector<CertPtr>& chain,
                                                                 absl::string_view chain_name,
                                                                 absl::string_view cls);
  absl::Status VerifyLink(const LiteCert& cert, const LiteCert& issuer);

  void RememberChain(absl::string_view pem, std::shared_ptr<const PckChainResult> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pck_mru_.size() >= kMruSize) pck_mru_.pop_back();
    pck_mru_.insert(pck_mru_.begin(), {std::string(pem), std::move(result)});
  }
  void RememberCollateral(const Collateral& c, std::shared_ptr<const CollateralResult> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (collateral_mru_.size() >= kMruSize) collateral_mru_.pop_back();
    collateral_mru_.insert(collateral_mru_.begin(), {c, std::move(result)});
  }

  template <typename Map, typename V>
  void Insert(Map& map, typename Map::key_type key, V value, size_t max)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (map.size() >= max && !map.empty()) map.erase(map.begin());
    map.insert_or_assign(std::move(key), std::move(value));
  }

  const TrustAnchors anchors_;
  const Verifier::Options options_;
  std::shared_ptr<const P256Group> group_;

  mutable absl::Mutex mu_;
  // Keyed by the exact bytes (absl::Hash to find, full comparison to match), so a hit is always
  // the very same input.
  absl::flat_hash_map<std::string, std::shared_ptr<const PckChainResult>> pck_chains_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Collateral, std::shared_ptr<const CollateralResult>> collaterals_
      ABSL_GUARDED_BY(mu_);
  struct SourceEntry {
    std::shared_ptr<const CollateralResult> result;
    absl::Time fetched_at;
  };
  absl::flat_hash_map<SourceKey, SourceEntry> by_fmspc_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Bytes64, std::shared_ptr<const P256Key>> att_keys_ ABSL_GUARDED_BY(mu_);
  // Most recently used PCK chains and collaterals, matched by byte equality: on the warm path this
  // replaces hashing the chain (4 KB) and the collateral (16 KB) with a short memcmp.
  static constexpr size_t kMruSize = 8;
  std::vector<std::pair<std::string, std::shared_ptr<const PckChainResult>>> pck_mru_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<Collateral, std::shared_ptr<const CollateralResult>>> collateral_mru_
      ABSL_GUARDED_BY(mu_);
  // Parsed certificates by their exact PEM block text.
  absl::flat_hash_map<std::string, CertPtr> certs_by_pem_ ABSL_GUARDED_BY(mu_);
  // (SHA-256 of a certificate, SHA-256 of its issuer certificate) pairs whose signature verified.
  absl::flat_hash_map<std::array<uint8_t, 64>, bool> links_ ABSL_GUARDED_BY(mu_);
  // SHA-256(PCK certificate digest || QE report || signature) of QE reports that verified.
  absl::flat_hash_map<std::array<uint8_t, 32>, bool> qe_reports_ ABSL_GUARDED_BY(mu_);
  Verifier::CacheStats stats_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<CertPtr> VerifierCore::GetCert(std::vector<uint8_t> der) {
  auto cert = LiteCert::Parse(std::move(der), *group_);
  if (!cert.ok()) {
    return Malformed(error_class::kUnsupportedCertFormat, cert.status().message());
  }
  return *cert;
}

absl::StatusOr<std::vector<CertPtr>> VerifierCore::ParseChain(absl::string_view pem,
                                                              absl::string_view name,
                                                              size_t want) {
  auto blocks = SplitPemCertificates(pem);
  if (!blocks.ok()) {
    return Malformed(error_class::kUnsupportedCertFormat,
                     absl::StrCat(name, ": ", blocks.status().message()));
  }
  if (blocks->size() != want) {
    return Malformed(error_class::kUnsupportedCertFormat,
                     absl::StrCat(name, " has ", blocks->size(), " certificates, want ", want));
  }
  std::vector<CertPtr> out;
  for (absl::string_view block : *blocks) {
    // The same PEM text recurs across chains (the root in all four): look it up before decoding.
    {
      absl::MutexLock lock(&mu_);
      auto it = certs_by_pem_.find(block);
      if (it != certs_by_pem_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    auto der = DecodePemCertificate(block);
    if (!der.ok()) {
      return Malformed(error_class::kUnsupportedCertFormat,
                       absl::StrCat(name, "[", out.size(), "]: ", der.status().message()));
    }
    auto cert = GetCert(*std::move(der));
    if (!cert.ok()) {
      return Malformed(error_class::kUnsupportedCertFormat,
                       absl::StrCat(name, "[", out.size(), "]: ", cert.status().message()));
    }
    {
      absl::MutexLock lock(&mu_);
      Insert(certs_by_pem_, std::string(block), *cert,
             options_.max_pck_chains + 4 * options_.max_collaterals + 64);
    }
    out.push_back(*std::move(cert));
  }
  return out;
}

absl::Status VerifierCore::VerifyLink(const LiteCert& cert, const LiteCert& issuer) {
  std::array<uint8_t, 64> key{};
  std::copy(cert.digest().begin(), cert.digest().end(), key.begin());
  std::copy(issuer.digest().begin(), issuer.digest().end(), key.begin() + 32);
  {
    absl::MutexLock lock(&mu_);
    if (links_.contains(key)) return absl::OkStatus();
  }
  PML_RETURN_IF_ERROR(cert.VerifySignedBy(issuer.key()));
  absl::MutexLock lock(&mu_);
  Insert(links_, key, true, options_.max_pck_chains + 4 * options_.max_collaterals + 64);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TrustAnchor>> VerifierCore::VerifyChain(
    const std::vector<CertPtr>& chain, absl::string_view chain_name, absl::string_view cls) {
  const LiteCert& root = *chain.back();
  std::shared_ptr<const TrustAnchor> anchor = anchors_.Find(root.key().point());
  if (anchor == nullptr) {
    return Refuse(cls, absl::StrCat(chain_name, ": root key is not a trusted anchor (root \"",
                                    root.subject_cn().substr(0, 64), "\")"));
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (!chain[i]->is_ca()) {
      return Refuse(cls, absl::StrCat(chain_name, "[", i, "] is not a ca certificate"));
    }
  }
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    if (!VerifyLink(*chain[i], *chain[i + 1]).ok()) {
      return Refuse(cls, absl::StrCat(chain_name, "[", i,
                                      "] signature does not verify with its issuer's key"));
    }
  }
  // The root's self-signature; skipped for a root certificate the anchor already vouches for.
  const bool known = std::find(anchor->known_root_digests.begin(),
                               anchor->known_root_digests.end(),
                               root.digest()) != anchor->known_root_digests.end();
  if (!known && !VerifyLink(root, root).ok()) {
    return Refuse(cls, absl::StrCat(chain_name, " root is not validly self-signed"));
  }
  return anchor;
}

absl::StatusOr<std::shared_ptr<const PckChainResult>> VerifierCore::GetPckChain(
    absl::string_view pem) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [text, result] : pck_mru_) {
      if (text == pem) {
        ++stats_.pck_chain_hits;
        return result;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = pck_chains_.find(pem);
    if (it != pck_chains_.end()) {
      ++stats_.pck_chain_hits;
      RememberChain(pem, it->second);
      return it->second;
    }
    ++stats_.pck_chain_misses;
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const PckChainResult> result, BuildPckChain(pem));
  absl::MutexLock lock(&mu_);
  Insert(pck_chains_, std::string(pem), result, options_.max_pck_chains);
  RememberChain(pem, result);
  return result;
}

absl::StatusOr<std::shared_ptr<const PckChainResult>> VerifierCore::BuildPckChain(
    absl::string_view pem) {
  const absl::string_view cls = error_class::kPckCertChainUntrusted;
  // QVL EXPECTED_CERTIFICATE_COUNT_IN_PCK_CHAIN = 3.
  PML_ASSIGN_OR_RETURN(std::vector<CertPtr> chain, ParseChain(pem, "pck certificate chain", 3));
  PML_ASSIGN_OR_RETURN(chain, OrderChain(std::move(chain), "pck certificate chain", cls));
  // §5 step 2 name checks (QVL PckCertVerifier).
  if (!absl::StrContains(chain[2]->subject_cn(), "SGX Root CA")) {
    return Refuse(cls, "pck chain root common name lacks \"SGX Root CA\"");
  }
  if (!absl::StrContains(chain[1]->subject_cn(), "CA")) {
    return Refuse(cls, "pck chain intermediate common name lacks \"CA\"");
  }
  if (!absl::StrContains(chain[0]->subject_cn(), "SGX PCK Certificate")) {
    return Refuse(error_class::kInvalidPckCert,
                  "pck certificate common name lacks \"SGX PCK Certificate\"");
  }
  PML_ASSIGN_OR_RETURN(auto anchor, VerifyChain(chain, "pck certificate chain", cls));

  auto result = std::make_shared<PckChainResult>();
  result->anchor = std::move(anchor);
  const LiteExtension* sgx = chain[0]->FindExtension(kSgxExtensionOid);
  if (sgx == nullptr) {
    return Malformed(error_class::kInvalidPckCert, "pck certificate has no sgx extension");
  }
  PML_ASSIGN_OR_RETURN(result->info, ParsePckCertInfoFromExtension(sgx->value));
  PML_ASSIGN_OR_RETURN(result->ca_type, PckCaTypeFromIssuerCn(chain[0]->issuer_cn()));
  for (size_t i = 0; i < chain.size(); ++i) {
    result->times.push_back(CertTimes(*chain[i], absl::StrCat("pck_cert_chain[", i, "]"),
                                      error_class::kPckCertChainExpired));
  }
  result->leaf = chain[0];
  result->ca = chain[1];
  result->root = chain[2];
  return result;
}

absl::StatusOr<std::shared_ptr<const CollateralResult>> VerifierCore::GetCollateral(
    const Collateral& c) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [known, result] : collateral_mru_) {
      if (known == c) {
        ++stats_.collateral_hits;
        return result;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = collaterals_.find(c);
    if (it != collaterals_.end()) {
      ++stats_.collateral_hits;
      RememberCollateral(c, it->second);
      return it->second;
    }
    ++stats_.collateral_misses;
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const CollateralResult> result, BuildCollateral(c));
  absl::MutexLock lock(&mu_);
  Insert(collaterals_, c, result, options_.max_collaterals);
  RememberCollateral(c, result);
  return result;
}

absl::StatusOr<std::shared_ptr<const CollateralResult>> VerifierCore::BuildCollateral(
    const Collateral& c) {
  auto result = std::make_shared<CollateralResult>();
  auto add_chain_times = [&](const std::vector<CertPtr>& chain, absl::string_view name) {
    for (size_t i = 0; i < chain.size(); ++i) {
      result->times.push_back(CertTimes(*chain[i], absl::StrCat(name, "[", i, "]"),
                                        error_class::kSigningCertChainExpired));
    }
  };

  // CRLs and their issuer chain (§5 step 3).
  auto root_crl = LiteCrl::Parse(c.root_ca_crl);
  if (!root_crl.ok()) {
    return Malformed(error_class::kCrlUnsupportedFormat,
                     absl::StrCat("root_ca_crl: ", root_crl.status().message()));
  }
  result->root_crl = *std::move(root_crl);
  auto pck_crl = LiteCrl::Parse(c.pck_crl);
  if (!pck_crl.ok()) {
    return Malformed(error_class::kCrlUnsupportedFormat,
                     absl::StrCat("pck_crl: ", pck_crl.status().message()));
  }
  result->pck_crl = *std::move(pck_crl);
  PML_ASSIGN_OR_RETURN(std::vector<CertPtr> crl_chain,
                       ParseChain(c.pck_crl_issuer_chain, "pck_crl_issuer_chain", 2));
  PML_ASSIGN_OR_RETURN(crl_chain, OrderChain(std::move(crl_chain), "pck_crl_issuer_chain",
                                             error_class::kRootCaUntrusted));
  PML_ASSIGN_OR_RETURN(result->anchor, VerifyChain(crl_chain, "pck_crl_issuer_chain",
                                                   error_class::kRootCaUntrusted));
  const LiteCert& root = *crl_chain[1];
  const LiteCert& pck_ca = *crl_chain[0];
  if (result->root_crl->issuer_der() != root.subject_der()) {
    return Refuse(error_class::kCrlUnknownIssuer, "root_ca_crl is not issued by the root ca");
  }
  if (!result->root_crl->VerifySignedBy(root.key()).ok()) {
    return Refuse(error_class::kCrlInvalidSignature,
                  "root_ca_crl signature does not verify with the root key");
  }
  if (result->pck_crl->issuer_der() != pck_ca.subject_der()) {
    return Refuse(error_class::kCrlUnknownIssuer,
                  "pck_crl is not issued by the ca of pck_crl_issuer_chain");
  }
  if (!result->pck_crl->VerifySignedBy(pck_ca.key()).ok()) {
    return Refuse(error_class::kCrlInvalidSignature,
                  "pck_crl signature does not verify with the pck ca key");
  }
  if (result->root_crl->IsRevoked(pck_ca.serial())) {
    return Refuse(error_class::kIntermediateCaRevoked, "pck crl issuer ca is revoked");
  }
  result->times.push_back(CrlTimes(*result->pck_crl, "pck_crl"));
  result->times.push_back(CrlTimes(*result->root_crl, "root_ca_crl"));
  add_chain_times(crl_chain, "pck_crl_issuer_chain");

  // TCB info (§5 step 4) and QE identity (step 5): chain, signature over the exact bytes,
  // signer not revoked, then parse.
  struct Signed {
    absl::string_view name;
    const std::string* body;
    const std::vector<uint8_t>* signature;
    const std::string* chain;
    absl::string_view bad_signature_class;
  };
  const Signed items[] = {
      {"tcb_info", &c.tcb_info_body, &c.tcb_info_signature, &c.tcb_info_issuer_chain,
       error_class::kTcbInfoInvalidSignature},
      {"qe_identity", &c.qe_identity_body, &c.qe_identity_signature, &c.qe_identity_issuer_chain,
       error_class::kQeIdentityInvalidSignature},
  };
  for (const Signed& item : items) {
    const std::string chain_name = absl::StrCat(item.name, "_issuer_chain");
    const absl::string_view cls = error_class::kTcbSigningCertChainUntrusted;
    PML_ASSIGN_OR_RETURN(std::vector<CertPtr> chain, ParseChain(*item.chain, chain_name, 2));
    PML_ASSIGN_OR_RETURN(chain, OrderChain(std::move(chain), chain_name, cls));
    if (!absl::StrContains(chain[0]->subject_cn(), "TCB Signing")) {
      return Refuse(cls, absl::StrCat(chain_name, " signer common name lacks \"TCB Signing\""));
    }
    PML_ASSIGN_OR_RETURN(auto anchor, VerifyChain(chain, chain_name, cls));
    if (anchor != result->anchor) {
      return Refuse(error_class::kRootCaUntrusted,
                    absl::StrCat(chain_name, " is anchored at another root than the crl chain"));
    }
    if (!chain[0]->key().VerifyRaw(core::AsBytes(*item.body), *item.signature).ok()) {
      return Refuse(item.bad_signature_class,
                    absl::StrCat(item.name, " signature does not verify over the body bytes"));
    }
    if (result->root_crl->IsRevoked(chain[0]->serial())) {
      return Refuse(error_class::kTcbSigningCertRevoked,
                    absl::StrCat(chain_name, " signer is revoked by the root ca crl"));
    }
    add_chain_times(chain, chain_name);
  }
  PML_ASSIGN_OR_RETURN(result->tcb_info, ParseTcbInfo(c.tcb_info_body));
  PML_ASSIGN_OR_RETURN(result->qe_identity, ParseQeIdentity(c.qe_identity_body));
  result->times.push_back(TimeBound{result->tcb_info.issue_date, result->tcb_info.next_update,
                                    "tcb_info.issueDate", "tcb_info.nextUpdate",
                                    error_class::kTcbInfoExpired});
  result->times.push_back(TimeBound{result->qe_identity.issue_date,
                                    result->qe_identity.next_update, "qe_identity.issueDate",
                                    "qe_identity.nextUpdate", error_class::kQeIdentityExpired});
  Widen(result->window, result->times);
  return result;
}

absl::StatusOr<std::shared_ptr<const CollateralResult>> VerifierCore::GetFromSource(
    CollateralSource& source, const SourceKey& key, absl::Time now) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_fmspc_.find(key);
    if (it != by_fmspc_.end() &&
        (now <= it->second.result->window.not_after ||
         absl::AbsDuration(now - it->second.fetched_at) < options_.source_refetch_interval)) {
      ++stats_.source_hits;
      return it->second.result;
    }
    ++stats_.source_fetches;
  }
  PML_ASSIGN_OR_RETURN(Collateral c, source.GetCollateral(key.fmspc, key.ca, key.tdx));
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const CollateralResult> result, GetCollateral(c));
  absl::MutexLock lock(&mu_);
  Insert(by_fmspc_, key, SourceEntry{result, now}, options_.max_collaterals);
  return result;
}

bool VerifierCore::QeReportVerifies(const PckChainResult& pck, const QuoteSignatureData& sd) {
  std::vector<uint8_t> id(pck.leaf->digest().begin(), pck.leaf->digest().end());
  id.insert(id.end(), sd.qe_report.raw.begin(), sd.qe_report.raw.end());
  id.insert(id.end(), sd.qe_report_signature.begin(), sd.qe_report_signature.end());
  const std::array<uint8_t, 32> key = Sha256(id);
  {
    absl::MutexLock lock(&mu_);
    if (qe_reports_.contains(key)) return true;
  }
  if (!pck.leaf->key().VerifyRaw(sd.qe_report.raw, sd.qe_report_signature).ok()) return false;
  absl::MutexLock lock(&mu_);
  Insert(qe_reports_, key, true, options_.max_pck_chains + options_.max_attestation_keys);
  return true;
}

absl::StatusOr<std::shared_ptr<const P256Key>> VerifierCore::GetAttestationKey(
    const Bytes64& raw) {
  {
    absl::MutexLock lock(&mu_);
    auto it = att_keys_.find(raw);
    if (it != att_keys_.end()) return it->second;
  }
  auto key = P256Key::FromPoint(*group_, raw);
  if (!key.ok()) {
    return Refuse(error_class::kInvalidQuoteSignature,
                  "attestation key is not a valid P-256 point");
  }
  absl::MutexLock lock(&mu_);
  Insert(att_keys_, raw, *key, options_.max_attestation_keys);
  return *key;
}

absl::StatusOr<VerifiedQuote> VerifierCore::Verify(Quote quote, const Collateral* collateral,
                                                   CollateralSource* source, absl::Time now) {
  // Step 2: PCK chain (from the quote, else from the collateral).
  absl::string_view pem = quote.PckCertChainPem();
  if (pem.empty() && collateral != nullptr) pem = collateral->pck_certificate_chain;
  if (pem.empty()) {
    return Malformed(error_class::kUnsupportedCertFormat,
                     absl::StrCat("quote certification data type ",
                                  quote.signature_data.certification_data_type,
                                  " carries no pem pck chain and the collateral has none"));
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const PckChainResult> chain, GetPckChain(pem));
  const PckChainResult& pck = *chain;

  // Steps 3-5: collateral (cached).
  std::shared_ptr<const CollateralResult> col_ptr;
  if (source != nullptr) {
    PML_ASSIGN_OR_RETURN(col_ptr,
                         GetFromSource(*source, SourceKey{pck.info.fmspc, pck.ca_type,
                                                          quote.is_tdx()},
                                       now));
  } else {
    PML_ASSIGN_OR_RETURN(col_ptr, GetCollateral(*collateral));
  }
  const CollateralResult& col = *col_ptr;
  if (col.anchor != pck.anchor) {
    return Refuse(error_class::kRootCaUntrusted,
                  "collateral and pck chain are anchored at different roots");
  }

  // Revocation (§5 step 3): the PCK CRL must be the CRL of the PCK's issuer.
  if (col.pck_crl->issuer_der() != pck.leaf->issuer_der()) {
    return Refuse(error_class::kInvalidPckCrl,
                  absl::StrCat("pck crl issuer \"", col.pck_crl->issuer_cn().substr(0, 64),
                               "\" is not the pck issuer \"",
                               pck.leaf->issuer_cn().substr(0, 64), "\""));
  }
  if (col.root_crl->IsRevoked(pck.ca->serial())) {
    return Refuse(error_class::kIntermediateCaRevoked, "pck intermediate ca is revoked");
  }
  if (col.pck_crl->IsRevoked(pck.leaf->serial())) {
    return Refuse(error_class::kPckRevoked,
                  absl::StrCat("pck certificate serial ", Hex(pck.leaf->serial()),
                               " is revoked"));
  }

  // Collateral time (§7).
  CollateralWindow window = col.window;
  Widen(window, pck.times);
  CollateralTimeStatus time_status = CollateralTimeStatus::kValid;
  if (now > window.not_after) {
    time_status = CollateralTimeStatus::kExpired;
  } else if (now < window.not_before) {
    time_status = CollateralTimeStatus::kNotYetValid;
  }
  if (time_status != CollateralTimeStatus::kValid && !options_.verify.allow_expired_collateral) {
    if (time_status == CollateralTimeStatus::kExpired) {
      absl::string_view cls = error_class::kCollateralExpired;
      for (const auto* times : {&pck.times, &col.times}) {
        for (const TimeBound& t : *times) {
          if (t.end_name == window.not_after_item) cls = t.expiry_class;
        }
      }
      return Refuse(cls, absl::StrCat("collateral expired: ", window.not_after_item, " ",
                                      IsoTime(window.not_after), " is before ",
                                      IsoTime(now)));
    }
    return Refuse(error_class::kCollateralNotYetValid,
                  absl::StrCat("collateral not yet valid: ", window.not_before_item, " ",
                               IsoTime(window.not_before), " is after ", IsoTime(now)));
  }

  // Step 6: TCB info / QE identity vs quote.
  const TcbInfo& tcb = col.tcb_info;
  const QeIdentity& qe_id = col.qe_identity;
  if (tcb.is_tdx() != quote.is_tdx()) {
    return Refuse(error_class::kTcbInfoMismatch,
                  absl::StrCat("tcb info id ", tcb.id, " does not match the quote's tee type"));
  }
  if (tcb.fmspc != pck.info.fmspc) {
    return Refuse(error_class::kTcbInfoMismatch,
                  absl::StrCat("fmspc ", Hex(tcb.fmspc), " vs pck ", Hex(pck.info.fmspc)));
  }
  if (tcb.pce_id != pck.info.pce_id) {
    return Refuse(error_class::kTcbInfoMismatch,
                  absl::StrCat("pceid ", Hex(tcb.pce_id), " vs pck ", Hex(pck.info.pce_id)));
  }
  const absl::string_view want_qe_id = quote.is_tdx() ? "TD_QE" : "QE";
  if (qe_id.id != want_qe_id) {
    return Refuse(error_class::kQeIdentityMismatch,
                  absl::StrCat("enclave identity id ", qe_id.id.substr(0, 16), ", want ",
                               want_qe_id));
  }

  const QuoteSignatureData& sd = quote.signature_data;
  const EnclaveReport& qe = sd.qe_report;
  // Step 7: QE report signature by the PCK key.
  if (!QeReportVerifies(pck, sd)) {
    return Refuse(error_class::kInvalidQeReportSignature,
                  "qe report signature does not verify with the pck key");
  }
  // Step 8: QE report data = SHA-256(attestation key || QE auth data) || 32 zero bytes.
  std::vector<uint8_t> bound(sd.attestation_key.begin(), sd.attestation_key.end());
  bound.insert(bound.end(), sd.qe_auth_data.begin(), sd.qe_auth_data.end());
  const std::array<uint8_t, 32> expect = Sha256(bound);
  const bool zero_tail = std::all_of(qe.report_data.begin() + 32, qe.report_data.end(),
                                     [](uint8_t b) { return b == 0; });
  if (!std::equal(expect.begin(), expect.end(), qe.report_data.begin()) || !zero_tail) {
    return Refuse(error_class::kInvalidQeReportData,
                  "qe report data is not sha256(attestation key || qe auth data) || zeros");
  }

  // Step 9: TDX module identity.
  if (quote.is_tdx()) {
    const TdReport& td = *quote.td_report;
    const TdxModule* expected = nullptr;
    std::string which = "tdxModule";
    if (quote.header.version > kQuoteVersion3 && td.tee_tcb_svn[1] > 0) {
      const TdxModuleIdentity* id = FindModuleIdentity(tcb, td.tee_tcb_svn[1]);
      if (id == nullptr) {
        return Refuse(error_class::kTdxModuleMismatch,
                      absl::StrFormat("tcb info has no module identity TDX_%02X",
                                      td.tee_tcb_svn[1]));
      }
      expected = &id->module;
      which = id->id;
    } else if (tcb.tdx_module.has_value()) {
      expected = &*tcb.tdx_module;
    } else {
      return Refuse(error_class::kTdxModuleMismatch, "tcb info has no tdxModule");
    }
    if (td.mr_signer_seam != expected->mr_signer) {
      return Refuse(error_class::kTdxModuleMismatch,
                    absl::StrCat("mrsignerseam ", Hex(td.mr_signer_seam), " is not ", which,
                                 " mrsigner"));
    }
    // QVL: every SEAMATTRIBUTES byte must be zero and equal the expected attributes (the mask
    // is not applied), §5 step 9.
    std::array<uint8_t, 8> seam{};
    for (size_t i = 0; i < 8; ++i) seam[i] = static_cast<uint8_t>(td.seam_attributes >> (8 * i));
    const bool all_zero = td.seam_attributes == 0;
    if (!all_zero || seam != expected->attributes) {
      return Refuse(error_class::kTdxModuleMismatch,
                    absl::StrCat("seamattributes ", Hex(seam), " are not zero / ", which,
                                 " attributes"));
    }
  }

  // Step 10: QE identity.
  if ((qe.misc_select & qe_id.misc_select_mask) != qe_id.misc_select) {
    return Refuse(error_class::kQeIdentityMismatch, "qe miscselect does not match the identity");
  }
  for (size_t i = 0; i < 16; ++i) {
    if ((qe.attributes[i] & qe_id.attributes_mask[i]) != qe_id.attributes[i]) {
      return Refuse(error_class::kQeIdentityMismatch,
                    "qe attributes do not match the identity under its mask");
    }
  }
  if (qe.mr_signer != qe_id.mr_signer) {
    return Refuse(error_class::kQeIdentityMismatch,
                  absl::StrCat("qe mrsigner ", Hex(qe.mr_signer), " is not the identity's"));
  }
  if (qe.isv_prod_id != qe_id.isv_prod_id) {
    return Refuse(error_class::kQeIdentityMismatch,
                  absl::StrCat("qe isvprodid ", qe.isv_prod_id, ", want ", qe_id.isv_prod_id));
  }
  const IsvTcbLevel* qe_level = nullptr;
  for (const IsvTcbLevel& l : qe_id.tcb_levels) {
    if (l.isv_svn <= qe.isv_svn) {
      qe_level = &l;
      break;
    }
  }
  if (qe_level == nullptr) {
    return Refuse(error_class::kTcbNotSupported,
                  absl::StrCat("no qe identity tcb level matches qe isvsvn ", qe.isv_svn));
  }

  // Step 11: quote signature by the attestation key.
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const P256Key> att_key,
                       GetAttestationKey(sd.attestation_key));
  if (!att_key->VerifyRaw(quote.signed_region(), sd.signature).ok()) {
    return Refuse(error_class::kInvalidQuoteSignature,
                  "quote signature does not verify with the attestation key");
  }

  // Step 12: TCB level.
  PML_ASSIGN_OR_RETURN(TcbEvaluation ev, EvaluateTcb(tcb, pck.info, quote, qe_level->status));

  VerifiedQuote out;
  out.tcb_status_ = ev.status;
  out.advisory_ids_ = ev.level->advisory_ids;
  AddAdvisories(out.all_advisories_, ev.level->advisory_ids, AdvisorySource::kTcbLevel);
  if (ev.module_level != nullptr) {
    AddAdvisories(out.all_advisories_, ev.module_level->advisory_ids, AdvisorySource::kTdxModule);
  }
  AddAdvisories(out.all_advisories_, qe_level->advisory_ids, AdvisorySource::kQeIdentity);
  out.tcb_date_ = ev.level->tcb_date;
  out.tcb_level_status_ = ev.level->status;
  out.tdx_module_status_ = ev.module_status;
  out.qe_tcb_status_ = qe_level->status;
  out.tcb_evaluation_data_number_ = tcb.tcb_evaluation_data_number;
  out.pck_ = pck.info;
  out.pck_ca_type_ = pck.ca_type;
  out.window_ = std::move(window);
  out.time_status_ = time_status;
  out.simulated_ = pck.anchor->simulated;
  out.trust_anchor_name_ = pck.anchor->name;
  out.verified_at_ = now;
  out.quote_ = std::move(quote);
  return out;
}

}  // namespace internal

absl::string_view CollateralTimeStatusName(CollateralTimeStatus s) {
  switch (s) {
    case CollateralTimeStatus::kValid:
      return "Valid";
    case CollateralTimeStatus::kExpired:
      return "Expired";
    case CollateralTimeStatus::kNotYetValid:
      return "NotYetValid";
  }
  return "Unknown";
}

absl::StatusOr<VerifiedQuote> VerifyQuote(const Quote& quote, const Collateral& collateral,
                                          const TrustAnchors& anchors, absl::Time now,
                                          const VerifyOptions& options) {
  Verifier::Options o;
  o.verify = options;
  internal::VerifierCore core(anchors, o);
  return core.Verify(quote, &collateral, nullptr, now);
}

Verifier::Verifier(TrustAnchors anchors, Options options)
    : core_(std::make_unique<internal::VerifierCore>(std::move(anchors), options)) {}

Verifier::~Verifier() = default;

absl::StatusOr<VerifiedQuote> Verifier::Verify(const Quote& quote, const Collateral& collateral,
                                               absl::Time now) {
  return core_->Verify(quote, &collateral, nullptr, now);
}

absl::StatusOr<VerifiedQuote> Verifier::Verify(absl::Span<const uint8_t> quote_bytes,
                                               const Collateral& collateral, absl::Time now) {
  PML_ASSIGN_OR_RETURN(Quote quote, ParseQuote(quote_bytes));
  return core_->Verify(std::move(quote), &collateral, nullptr, now);
}

absl::StatusOr<VerifiedQuote> Verifier::Verify(absl::Span<const uint8_t> quote_bytes,
                                               CollateralSource& source, absl::Time now) {
  PML_ASSIGN_OR_RETURN(Quote quote, ParseQuote(quote_bytes));
  return core_->Verify(std::move(quote), nullptr, &source, now);
}

Verifier::CacheStats Verifier::cache_stats() const { return core_->Stats(); }
void Verifier::ClearCaches() { core_->Clear(); }
const TrustAnchors& Verifier::anchors() const { return core_->anchors(); }

}  // namespace pml::tdx
