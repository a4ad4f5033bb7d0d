#pragma once
// NVIDIA reference integrity manifests (RIMs): ISO/IEC 19770-2 SWID tags with TCG RIM-IM
// attributes, carrying golden SHA-384 measurements for a driver, a VBIOS or an NVSwitch BIOS, and
// an enveloped XMLDSig signature (C14N 1.1, ecdsa-sha384) whose KeyInfo holds the signing chain
// (L4 signer <- L3 <- CA <- NVIDIA CoRIM signing Root CA). Rules: spec §5.
//
//   ParseRim          structure only (libxml2; no DTDs, no network, no entity expansion).
//   VerifyRim         the XML signature (xmlsec1 with the signer key given explicitly; exactly one
//                     Reference, URI="", only the expected transforms) and the signer chain to the
//                     pinned RIM root (validity not checked here: the window is returned so that
//                     the caller reports "expired" against its own clock, as NVAT does).
//   MatchMeasurements golden vs runtime by index (RIM index = SPDM index - 1), active entries only,
//                     any alternative, equal sizes, index 35 skipped when NVDEC0 is disabled, an
//                     index active in both RIMs is a conflict.
//   RimSource         where RIMs come from: a directory / in-memory map here, NVIDIA's RIM
//                     service in pml_gpu_online (rim_service.h).
//
// Thread-safety: the functions are pure and thread-safe (libxml2/xmlsec are initialized once,
// process-wide, on first use). RimSource implementations say their own.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"
#include "lib/gpu/report.h"

namespace pml::gpu {

inline constexpr size_t kMaxRimBytes = 4 << 20;
inline constexpr size_t kMaxRimAlternatives = 16;

struct RimMeasurement {
  uint32_t index = 0;  // 0-based (= SPDM block index - 1)
  bool active = false;
  std::string name;
  size_t size = 0;                                 // golden value size in bytes
  std::vector<std::vector<uint8_t>> alternatives;  // Hash0..Hash{alternatives-1}
};

struct Rim {
  std::string xml;                // the document as given
  crypto::Sha256Digest sha256{};  // of `xml` (what caches and the RIM service key on)
  std::string tag_id;
  std::string product;                       // SoftwareIdentity@name ("GH100", "LS10")
  std::string colloquial_version;            // Meta@colloquialVersion (driver / VBIOS version)
  std::string firmware_manufacturer_id;      // Meta@FirmwareManufacturerId ("5703" -> oemid)
  std::vector<RimMeasurement> measurements;  // indices unique
};

// Parses a RIM. kInvalidArgument "RIM_MALFORMED: ..." when the XML does not parse, has a DTD,
// exceeds kMaxRimBytes, lacks SoftwareIdentity/Meta/Payload, or a Resource of type Measurement
// has a bad index, active flag, size, alternatives count or hash (hex of `size` bytes).
absl::StatusOr<Rim> ParseRim(absl::string_view xml);

// A RIM whose signature and chain verified.
struct RimSignature {
  std::vector<crypto::X509Ptr> chain;  // signer first, ending with the pinned root
  absl::Time not_before;               // latest notBefore over the chain
  absl::Time not_after;                // earliest notAfter over the chain
};

// Verifies `rim`'s XMLDSig and its signer chain to `rim_root`.
//   kInvalidArgument "RIM_MALFORMED: ..."      no / several Signature elements, no certificates
//   kFailedPrecondition "RIM_INVALID_SIGNATURE: ..."  digest or signature does not verify, or
//                                               the SignedInfo is not the expected shape
//   kFailedPrecondition "RIM_CHAIN_UNTRUSTED: ..."    the signer chain does not reach `rim_root`
absl::StatusOr<RimSignature> VerifyRim(const Rim& rim, const X509& rim_root);

// Where a golden value came from (NVAT's measurementSource).
enum class RimKind { kDriver, kVbios };
absl::string_view RimKindName(RimKind kind);  // "driver_rim", "vbios_rim"

struct MeasurementMismatch {
  uint32_t index = 0;  // RIM index (0-based)
  size_t golden_size = 0;
  std::vector<uint8_t> golden_value;  // Hash0
  size_t runtime_size = 0;            // 0 when the block is missing
  std::vector<uint8_t> runtime_value;
  RimKind source = RimKind::kDriver;
};

struct MatchResult {
  bool index_no_conflict = true;  // no index active in both RIMs
  size_t compared = 0;            // active golden entries compared (skips excluded)
  std::vector<uint32_t> skipped;  // RIM indices skipped (35 with NVDEC0 disabled)
  std::vector<MeasurementMismatch> mismatches;
  bool success() const { return index_no_conflict && mismatches.empty() && compared > 0; }
};

// Matches `report`'s blocks against the active entries of `driver` (may be null: switches) and
// `vbios`. kInvalidArgument "REPORT_MALFORMED: ..." when NVDEC0_STATUS is neither 0xAA nor 0x55.
// A mismatch or conflict is a result.
absl::StatusOr<MatchResult> MatchMeasurements(const Report& report, const Rim* driver,
                                              const Rim* vbios);

// ---- Sources.

// Supplies RIM documents by id ("NV_GPU_DRIVER_GH100_595.71.05"). Implementations must be
// thread-safe. kNotFound "RIM_NOT_FOUND: <id>" when the source has no such RIM; kUnavailable for
// a transient failure (online sources).
class RimSource {
 public:
  virtual ~RimSource() = default;
  virtual absl::StatusOr<std::string> GetRim(absl::string_view rim_id) = 0;
};

// RIMs held in memory, keyed by id. Thread-safe.
class StaticRimSource final : public RimSource {
 public:
  void Add(absl::string_view rim_id, std::string xml);
  // Reads `path` and adds it under `rim_id`. Errors from core::ReadFile.
  absl::Status AddFile(absl::string_view rim_id, absl::string_view path);
  absl::StatusOr<std::string> GetRim(absl::string_view rim_id) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> rims_ ABSL_GUARDED_BY(mu_);
};

// A RIM store directory (NVAT's --rim-dir layout): "<dir>/<id>.xml", else a RIM-service
// response "<dir>/<id>.json" or "<dir>/rim-service-response_<id>.json" whose "id" must equal
// <id> and whose "sha256", when present, must match the decoded "rim". Ids are restricted to
// [A-Za-z0-9._-] (no path traversal). Thread-safe (no state).
class DirectoryRimSource final : public RimSource {
 public:
  explicit DirectoryRimSource(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<std::string> GetRim(absl::string_view rim_id) override;

 private:
  std::string dir_;
};

// Decodes a RIM-service response body {"id","rim"(base64 XML),"sha256",...}: checks `id` equals
// `expected_id` and, when present, sha256(rim) equals "sha256". kInvalidArgument
// "RIM_MALFORMED: ..." or kFailedPrecondition "RIM_ID_MISMATCH: ...".
absl::StatusOr<std::string> DecodeRimServiceResponse(absl::string_view json,
                                                     absl::string_view expected_id);

// True when `rim_id` uses only [A-Za-z0-9._-] and is 1..128 characters.
bool IsValidRimId(absl::string_view rim_id);

}  // namespace pml::gpu
