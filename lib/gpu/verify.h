#pragma once
// Local verification of NVIDIA GPU (Hopper, Blackwell) and NVSwitch (LS10) evidence with the
// semantics of NVIDIA's local verifiers (shared/specs/gpu-evidence-verification.md §3-§6, §8).
//
// Evidence checks — any failure is an error (the evidence proves nothing):
//   1. the device chain (PEM, leaf first) verifies to the pinned NVIDIA Device Identity CA
//      (validity periods are reported, not enforced: NVAT's X509_V_FLAG_NO_CHECK_TIME);
//   2. the leaf's common name fixes the architecture (GH100 -> HOPPER, GB1xx -> BLACKWELL,
//      LS_10 -> LS10), which must equal VerifyOptions::expected_arch when given;
//   3. the report signature: ECDSA P-384 / SHA-384 over the report minus its last 96 bytes, with
//      the leaf key;
//   4. the request nonce equals the caller's (constant-time);
//   5. the leaf's FWID (Hopper: last 48 bytes of 2.23.133.5.4.1; Blackwell: TcbInfo
//      2.23.133.5.4.1.1 fwids[0]) equals the report's FWID field (absent in old drivers: matched,
//      unless Policy::require_fwid).
// Errors: kInvalidArgument "<CLASS>: ..." for malformed input; kFailedPrecondition with CLASS
// CERT_CHAIN_UNTRUSTED, ARCH_MISMATCH, UNSUPPORTED_ARCH, INVALID_REPORT_SIGNATURE, NONCE_MISMATCH
// or FWID_MISMATCH (errors.h).
//
// Appraisal inputs — results, never errors (as NVAT's claims): revocation through OCSP for the
// device chain's certificates [1..n-2] and each RIM chain's [0..n-2]; the driver and VBIOS RIMs
// (fetched from VerifyOptions::rims by the ids the report implies, signature + chain to the
// pinned CoRIM root, version match) and the measurement comparison. VerifiedGpu carries them as
// claims under NVIDIA's names (Claims()) and an overall verdict under VerifyOptions::policy
// (Passed(), with reasons in Failures()).
//
// Time: VerifyOptions::now is the verification time for certificate expiry and OCSP freshness;
// nothing reads the wall clock.
//
// Thread-safety: VerifyReport is pure apart from the sources it is given. Verifier is
// thread-safe; sources must be thread-safe.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/x509_ext.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/report.h"
#include "lib/gpu/rim.h"

namespace pml::gpu {

// SHA-256 of the SubjectPublicKeyInfo of NVIDIA's roots (shared/vectors/gpu/roots/PROVENANCE.md).
inline constexpr absl::string_view kNvidiaDeviceRootSpkiSha256 =
    "a90c4eb5acfd3e3d03a25db6a26b84f720ad0503196c627c21ddd48dd85b06a4";
inline constexpr absl::string_view kNvidiaRimRootSpkiSha256 =
    "dec1dc316477aa851eebdf51327ae9f864bc8d89254657ed1e7eb9168af1e1a3";

// The two pinned roots: device identity (device chains) and CoRIM signing (RIM chains). Never
// taken from evidence. Copyable (certificates are reference-counted); thread-safe to share.
class TrustAnchors {
 public:
  // Parses one PEM certificate each and checks each key against the NVIDIA pins above.
  // kInvalidArgument when a PEM does not hold exactly one certificate; kFailedPrecondition
  // "CERT_CHAIN_UNTRUSTED: ..." when a key is not the pinned one.
  static absl::StatusOr<TrustAnchors> NvidiaFromPem(absl::string_view device_root_pem,
                                                    absl::string_view rim_root_pem);
  static absl::StatusOr<TrustAnchors> NvidiaFromFiles(absl::string_view device_root_path,
                                                      absl::string_view rim_root_path);
  // NVIDIA's roots as built into this library (internal/nvidia_roots.h), pin-checked.
  static TrustAnchors NvidiaDefault();
  // Without the NVIDIA pins: for tests only.
  static absl::StatusOr<TrustAnchors> UnpinnedFromPem(absl::string_view device_root_pem,
                                                      absl::string_view rim_root_pem);

  // A copy that also trusts lib/tee's simulated GPU root, identified by its pinned key
  // (simulated.h kSimulatedGpuRootSpkiSha256): a device chain that ends with a self-signed
  // certificate carrying that key verifies to it, and the result is marked simulated and appraised
  // against the simulated golden measurements instead of NVIDIA RIMs (no OCSP: nothing revokes a
  // simulated certificate). UNSAFE outside development and CI: simulated evidence proves nothing.
  TrustAnchors WithSimulatedRoot() const;
  bool trusts_simulated() const { return trust_simulated_; }

  TrustAnchors(const TrustAnchors& other);
  TrustAnchors& operator=(const TrustAnchors& other);
  TrustAnchors(TrustAnchors&&) = default;
  TrustAnchors& operator=(TrustAnchors&&) = default;

  const X509& device_root() const { return *device_root_; }
  const X509& rim_root() const { return *rim_root_; }

 private:
  TrustAnchors() = default;
  crypto::X509Ptr device_root_;
  crypto::X509Ptr rim_root_;
  bool trust_simulated_ = false;
};

// Supplies DER OCSP responses. Implementations must be thread-safe.
//   kNotFound "OCSP_NOT_FOUND: ..."   no response for this certificate (cached source)
//   kUnavailable "OCSP_UNAVAILABLE: ..."  transient (online source)
class OcspSource {
 public:
  virtual ~OcspSource() = default;
  // `nonce` is what the request should carry (empty: none). Sources that return stored
  // responses ignore it; the verifier then reports the nonce as not matched.
  virtual absl::StatusOr<std::vector<uint8_t>> GetResponse(const X509& cert, const X509& issuer,
                                                           absl::Span<const uint8_t> nonce) = 0;
  // True when GetResponse sends `nonce` to a responder (so the verifier passes a fresh one).
  virtual bool SendsNonce() const { return false; }
  // How long (verification time) a Verifier may remember that this source failed for a
  // certificate before asking again. Non-zero only for sources that live as long as the Verifier
  // uses them (failures are cached under the source's address). Default: never cached.
  virtual absl::Duration FailureTtl() const { return absl::ZeroDuration(); }
};

// Stored OCSP responses (e.g. fetched earlier, or a Trust Outpost mirror), indexed by the serial
// numbers of the certificates each response covers. Thread-safe.
class CachedOcspSource final : public OcspSource {
 public:
  // Adds a DER OCSPResponse. kInvalidArgument when it does not parse or has no SingleResponse.
  absl::Status Add(absl::Span<const uint8_t> der);
  absl::StatusOr<std::vector<uint8_t>> GetResponse(const X509& cert, const X509& issuer,
                                                   absl::Span<const uint8_t> nonce) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::vector<uint8_t>> by_serial_ ABSL_GUARDED_BY(mu_);
};

// The overall-verdict policy. Defaults follow NVAT's default Rego policy (spec §6), with
// NVIDIA's treatment of a missing FWID.
struct Policy {
  bool require_ocsp = true;             // every chain's OCSP status good and response valid
  bool require_ocsp_nonce = false;      // ... and the nonce echoed (online only)
  bool allow_rim_cert_hold = false;     // RIM chain "revoked" with reason certificateHold passes
  bool allow_expired_rim_cert = false;  // RIM chain "expired" passes
  bool require_fwid = false;            // false: a report without FWID counts as matched
};

struct VerifyOptions {
  absl::Time now = absl::InfinitePast();  // required
  OcspSource* ocsp = nullptr;             // null: revocation not checked (claims say "unknown")
  RimSource* rims = nullptr;              // null: no RIMs (claims say not fetched; measres "fail")
  std::optional<Arch> expected_arch;      // the collector's claim, checked against the leaf
  Policy policy;
};

// A time as NVIDIA's claims print it ("2026-09-17T00:00:00Z"; infinity as 9999-12-31T23:59:59Z).
std::string FormatClaimTime(absl::Time t);

// "x-nvidia-gpu-*-cert-chain" claims.
struct CertChainClaims {
  std::string cert_status = "invalid";  // valid | expired | invalid | revoked
  std::string ocsp_status = "unknown";  // good | revoked | unknown
  std::string revocation_reason;        // empty unless revoked
  bool ocsp_nonce_matches = false;
  bool ocsp_response_valid = false;
  std::string ocsp_source = "none";  // none | source (the source's responses were used) | simulated
  absl::Time expiration_date = absl::InfinitePast();  // earliest notAfter
  std::string detail;                                 // why not valid/good, when it is not
};

// Driver / VBIOS RIM claims.
struct RimClaims {
  std::string id;
  bool fetched = false;
  bool signature_verified = false;
  bool version_match = false;
  bool measurements_available = false;
  std::string rim_version;  // colloquialVersion
  std::string sha256;       // hex of the document
  CertChainClaims cert_chain;
  std::string detail;  // the error that stopped it, when one did
};

class VerifiedGpu {
 public:
  VerifiedGpu(const VerifiedGpu&) = default;
  VerifiedGpu(VerifiedGpu&&) = default;
  VerifiedGpu& operator=(const VerifiedGpu&) = default;
  VerifiedGpu& operator=(VerifiedGpu&&) = default;

  const Report& report() const { return report_; }
  Arch arch() const { return arch_; }
  bool is_switch() const { return IsSwitch(arch_); }
  const std::string& hwmodel() const { return hwmodel_; }  // CN of the BROM / device-id cert
  const std::string& ueid() const { return ueid_; }        // leaf serial, decimal
  const std::string& driver_version() const { return driver_version_; }  // "" for switches
  const std::string& vbios_version() const { return vbios_version_; }
  bool fwid_present() const { return fwid_present_; }
  const CertChainClaims& device_chain() const { return device_chain_; }
  const RimClaims& driver_rim() const { return driver_rim_; }  // unused for switches
  const RimClaims& vbios_rim() const { return vbios_rim_; }
  const MatchResult& measurements() const { return match_; }
  bool measres() const { return measres_; }
  const std::string& oemid() const { return oemid_; }
  // GPU: SWITCH_PDI list (GpuSwitchPdis); switch: its DEVICE_PDI.
  const std::vector<std::string>& switch_pdis() const { return switch_pdis_; }
  absl::Time verified_at() const { return verified_at_; }
  const Nonce& nonce() const { return report_.nonce; }
  // The chain ended at the simulated root (TrustAnchors::WithSimulatedRoot): the measurements were
  // compared with the simulated golden values, and Claims() carries "x-pml-simulated": true.
  bool simulated() const { return simulated_; }

  // Overall verdict under the policy given at verification, and the failed checks (empty when
  // Passed()).
  bool Passed() const { return failures_.empty(); }
  const std::vector<std::string>& Failures() const { return failures_; }

  // Claims under NVIDIA's names (NVAT claims v3: measres, secboot, dbgstat, eat_nonce, hwmodel,
  // ueid, oemid, x-nvidia-gpu-driver-version, x-nvidia-gpu-vbios-version,
  // x-nvidia-gpu-attestation-report-*, x-nvidia-gpu-{driver,vbios}-rim-*, ...; switches use
  // x-nvidia-switch-* names).
  nlohmann::json Claims() const;

 private:
  friend class Verifier;
  VerifiedGpu() = default;

  Report report_;
  Arch arch_ = Arch::kHopper;
  std::string hwmodel_, ueid_, oemid_, driver_version_, vbios_version_;
  bool fwid_present_ = false;
  CertChainClaims device_chain_;
  RimClaims driver_rim_, vbios_rim_;
  MatchResult match_;
  bool measres_ = false;
  std::vector<std::string> switch_pdis_;
  std::vector<std::string> failures_;
  absl::Time verified_at_;
  bool simulated_ = false;
};

// Verifies one device's report. See the top of this file. kInvalidArgument when options.now is
// unset.
absl::StatusOr<VerifiedGpu> VerifyReport(const Report& report, absl::string_view cert_chain_pem,
                                         const TrustAnchors& anchors, const Nonce& nonce,
                                         const VerifyOptions& options);

// The result of verifying the devices of one attestation (one nonce).
class VerifiedSet {
 public:
  const std::vector<VerifiedGpu>& gpus() const { return gpus_; }
  const std::vector<VerifiedGpu>& switches() const { return switches_; }
  // True when PPCIe topology was checked (switch evidence given) — it passed, or the set would
  // have been an error.
  bool topology_checked() const { return topology_checked_; }
  // AND over every device.
  bool Passed() const;
  // True when any device is simulated.
  bool simulated() const;
  // {"x-nvidia-overall-att-result": bool, "GPU-0": {...}, ..., "SWITCH-0": {...}}.
  nlohmann::json Claims() const;

 private:
  friend class Verifier;
  std::vector<VerifiedGpu> gpus_;
  std::vector<VerifiedGpu> switches_;
  bool topology_checked_ = false;
};

// Every device of one attestation verified on its own, for callers that report each device
// rather than stop at the first refusal (pml-verifier's VerifyGpuEvidence, `pmlctl verify gpu`).
// A device's error is its own (Verifier::Verify's errors, or ARCH_MISMATCH when it is not the
// kind or architecture of the rest of the set); the PPCIe topology is checked when switches are
// given and every device verified.
struct SetOutcome {
  std::vector<absl::StatusOr<VerifiedGpu>> gpus;
  std::vector<absl::StatusOr<VerifiedGpu>> switches;
  // Set when the topology was checked: OK or TOPOLOGY_MISMATCH (also for GPUs that mix SPT and
  // MPT feature flags, whether or not switches were given).
  std::optional<absl::Status> topology;
  // Every device verified and passed, and the topology (when checked) holds. False for an empty
  // set.
  bool Passed() const;
  bool simulated() const;
  // As VerifiedSet::Claims; a device that did not verify appears as {"x-nvidia-error": "<CLASS>:
  // ...", "x-nvidia-overall-att-result": false}.
  nlohmann::json Claims() const;
};

// PPCIe topology (spec §8, nvtrust validate_topology.py): 8 GPU and 4 switch reports; each GPU's
// SWITCH_PDI set (zeros dropped) has 4 unique PDIs, identical on all GPUs; every switch's
// DEVICE_PDI is in it; every switch's first 8 SWITCH_GPU_PDIS form the same set. OK, or
// kFailedPrecondition "TOPOLOGY_MISMATCH: <which rule>".
absl::Status CheckPpcieTopology(absl::Span<const Report* const> gpus,
                                absl::Span<const Report* const> switches);

namespace internal {
struct ChainEntry;
struct RimEntry;
struct OcspEntry;
}  // namespace internal

// A verifier with caches keyed by content hash, so that a warm verification costs about one
// P-384 signature check: verified device chains (SHA-256 of the PEM text), parsed and verified
// RIMs (SHA-256 of the document; failures too, since they depend only on the bytes and the
// pinned root), RIM documents by id (refetched after Options::rim_id_ttl), and OCSP results (per
// certificate, until the response's nextUpdate; failures for the source's FailureTtl()). Checks
// that depend on `now` or on the report are redone on every call. Thread-safe (absl::Mutex);
// sources are called outside the lock.
class Verifier {
 public:
  struct Options {
    size_t max_chains = 4096;
    size_t max_rims = 512;
    size_t max_ocsp = 16384;
    absl::Duration rim_id_ttl = absl::Hours(1);
  };
  struct CacheStats {
    uint64_t chain_hits = 0, chain_misses = 0;
    uint64_t rim_hits = 0, rim_misses = 0;
    uint64_t rim_fetches = 0;
    uint64_t ocsp_hits = 0, ocsp_fetches = 0;
  };

  explicit Verifier(TrustAnchors anchors) : Verifier(std::move(anchors), Options{}) {}
  Verifier(TrustAnchors anchors, Options options);
  ~Verifier();

  // As VerifyReport.
  absl::StatusOr<VerifiedGpu> Verify(const Report& report, absl::string_view cert_chain_pem,
                                     const Nonce& nonce, const VerifyOptions& options);
  // Parses evidence.report first (its errors are returned as they are).
  absl::StatusOr<VerifiedGpu> Verify(const DeviceEvidence& evidence, const Nonce& nonce,
                                     const VerifyOptions& options);

  // Verifies every GPU and switch of one attestation with one nonce; a device's error is
  // returned annotated with its name ("GPU-3: ..."). GPUs must share one architecture
  // (ARCH_MISMATCH) and not mix FEATURE_FLAG SPT and MPT (nvtrust). With switches, the PPCIe
  // topology is checked (CheckPpcieTopology). kInvalidArgument when `gpus` is empty.
  absl::StatusOr<VerifiedSet> VerifySet(absl::Span<const DeviceEvidence> gpus,
                                        absl::Span<const DeviceEvidence> switches,
                                        const Nonce& nonce, const VerifyOptions& options);
  // As VerifySet, but every device gets its own outcome (see SetOutcome). Never fails as a whole.
  SetOutcome VerifyEach(absl::Span<const DeviceEvidence> gpus,
                        absl::Span<const DeviceEvidence> switches, const Nonce& nonce,
                        const VerifyOptions& options);

  CacheStats stats() const;
  const TrustAnchors& anchors() const { return anchors_; }

 private:
  absl::StatusOr<std::shared_ptr<const internal::ChainEntry>> Chain(absl::string_view pem);
  std::shared_ptr<const internal::RimEntry> RimFor(absl::string_view id, RimSource& source,
                                                   absl::Time now, absl::Status* fetch_error);
  CertChainClaims ChainClaims(const std::vector<crypto::X509Ptr>& chain,
                              const std::vector<crypto::Sha256Digest>& der_hashes,
                              size_t first_checked, absl::Time not_before, absl::Time not_after,
                              const VerifyOptions& options);
  void FillRim(const Report& report, Arch arch, bool driver, const VerifyOptions& options,
               RimClaims& claims, std::shared_ptr<const internal::RimEntry>& entry);

  const TrustAnchors anchors_;
  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const internal::ChainEntry>> chains_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const internal::RimEntry>> rims_
      ABSL_GUARDED_BY(mu_);
  struct RimIdEntry {
    std::string sha256;
    absl::Time fetched_at;
  };
  absl::flat_hash_map<std::string, RimIdEntry> rim_ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const internal::OcspEntry>> ocsp_
      ABSL_GUARDED_BY(mu_);
  CacheStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pml::gpu
