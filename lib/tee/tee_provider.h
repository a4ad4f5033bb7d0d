#pragma once
// TEE providers: the one interface through which the guest agent asks its TEE for a quote and
// extends the runtime measurement registers (RTMRs), whatever produces them: the Linux
// configfs-tsm report interface, the /dev/tdx_guest device, or the simulator (lib/tee/simulator.h)
// on hosts without TDX. This library PRODUCES evidence; lib/tdx verifies it and never links this
// one (STYLE.md §1).
//
// Pick an implementation with MakeTeeProvider's explicit switch, never by registration, so the
// simulator can only be chosen by name.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::tee {

enum class TeeKind {
  kSimulated,       // lib/tee/simulator.h: real-format quotes under a simulated PCK chain
  kConfigfsTsm,     // /sys/kernel/config/tsm/report (Linux ≥ 6.7)
  kTdxGuestDevice,  // /dev/tdx_guest ioctls
};

// "simulated", "configfs-tsm", "tdx-guest-device": for logs, flags and the agent's Info.
absl::string_view TeeKindName(TeeKind kind);

// Sizes fixed by the TDX module ABI (TDREPORT / quote body, tdx-quote-verification.md §2.2).
inline constexpr size_t kReportDataSize = 64;
inline constexpr size_t kMeasurementSize = 48;  // MRTD, RTMRs, MRCONFIGID… (SHA-384)
inline constexpr int kRtmrCount = 4;

using Measurement = std::array<uint8_t, kMeasurementSize>;
using RtmrValues = std::array<Measurement, kRtmrCount>;

// TDATTRIBUTES bits (u64, tdx-quote-verification.md §2.2).
inline constexpr uint64_t kTdAttributeDebug = uint64_t{1} << 0;
inline constexpr uint64_t kTdAttributeSeptVeDisable = uint64_t{1} << 28;

// What a simulated TD looks like. Every register value is taken as given (in a simulated CVM the
// VMM passes MRTD and RTMR0-2 from the image's metadata.json, DESIGN.md §4).
struct SimulatorOptions {
  Measurement mrtd{};
  Measurement rtmr0{};  // initial RTMR0-2; RTMR3 always starts at zero (or the persisted value)
  Measurement rtmr1{};
  Measurement rtmr2{};
  Measurement mrconfigid{};
  Measurement mrowner{};
  Measurement mrownerconfig{};
  // SEPT_VE_DISABLE set and DEBUG clear, like a production TD. Set kTdAttributeDebug only to
  // exercise the policy that refuses debug TDs.
  uint64_t td_attributes = kTdAttributeSeptVeDisable;
  uint64_t xfam = 0x00000000000602e7;  // x87, SSE, AVX, AVX-512, PK, AMX: as real TDs report it
  // TEE_TCB_SVN; nullopt: the simulated platform's current TCB (kSimulatedTeeTcbSvn in
  // simulated_pki.h), which the simulated TCB info rates UpToDate.
  std::optional<std::array<uint8_t, 16>> tee_tcb_svn;
  // MRSEAM; nullopt: a fixed simulated TDX module measurement.
  std::optional<Measurement> mrseam;
  // When non-empty, RTMR3 is loaded from and written (atomically) to `<state_dir>/rtmr3` so it
  // survives an agent restart within one simulated boot. Put it on tmpfs (/run) so a reboot resets
  // it, as hardware does. RTMR0-2 extensions are kept in memory only.
  std::string state_dir;
};

// Where a TDX guest's kernel interfaces live (each overridable for tests and odd systems).
inline constexpr char kDefaultConfigfsTsmRoot[] = "/sys/kernel/config/tsm/report";
inline constexpr char kDefaultTdxGuestDevice[] = "/dev/tdx_guest";
// /sys/class/misc/tdx_guest is a link to /sys/devices/virtual/misc/tdx_guest, the path
// Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest documents (Linux >= 6.16).
inline constexpr char kDefaultTdxMeasurementsDir[] = "/sys/class/misc/tdx_guest/measurements";

// The hardware kinds (kConfigfsTsm, kTdxGuestDevice) use whichever of these exist; see
// lib/tee/tdx_provider.h for what each is used for.
struct HardwareTeeOptions {
  std::string configfs_tsm_root = kDefaultConfigfsTsmRoot;
  std::string tdx_guest_device = kDefaultTdxGuestDevice;
  std::string tdx_measurements_dir = kDefaultTdxMeasurementsDir;
  // configfs-tsm attempts when another writer changes the report entry under us (>= 1).
  int quote_attempts = 3;
};

// Options for every kind; each implementation reads its own part.
struct TeeOptions {
  SimulatorOptions simulator;
  HardwareTeeOptions hardware;
};

// A TEE the guest can attest with. Implementations are thread-safe: GetQuote, ExtendRtmr and
// GetRtmrs may be called concurrently, and an extension is atomic with respect to quotes (a quote
// sees the register before or after it, never half).
class TeeProvider {
 public:
  virtual ~TeeProvider() = default;

  // A quote (TDX quote v4 for the simulator; whatever the quote service returns on hardware)
  // whose TD report carries `report_data` verbatim. kInvalidArgument when report_data is not
  // exactly 64 bytes; kUnavailable when the TEE cannot produce one now (device busy, QGS down,
  // a writer kept racing us); kFailedPrecondition when this machine has no quote interface or it
  // is not TDX (the message names what is missing); kPermissionDenied when the kernel refuses
  // us; kInternal on a failure of ours.
  virtual absl::StatusOr<std::vector<uint8_t>> GetQuote(absl::Span<const uint8_t> report_data) = 0;

  // RTMR[index] = SHA384(RTMR[index] ‖ digest), as TDG.MR.RTMR.EXTEND does. kInvalidArgument when
  // index is outside 0..3 or digest is not 48 bytes; kPermissionDenied when the TEE forbids
  // extending that register from here; kUnimplemented when the kernel offers no way to extend
  // (the message says what is missing); kInternal when persisting the new value fails (the
  // register is then unchanged).
  virtual absl::Status ExtendRtmr(int index, absl::Span<const uint8_t> digest) = 0;

  // The current RTMR0-3. kUnimplemented where the TEE cannot report them without a quote.
  virtual absl::StatusOr<RtmrValues> GetRtmrs() = 0;

  virtual TeeKind Kind() const = 0;

  // True only for the simulator: its evidence proves nothing and verifiers refuse it by default.
  bool IsSimulated() const { return Kind() == TeeKind::kSimulated; }
};

// Builds the provider for `kind`: the simulator from options.simulator, or a hardware provider
// (lib/tee/tdx_provider.h) over the interfaces at options.hardware's paths that exist.
// kFailedPrecondition when the kind's own interface is missing (kConfigfsTsm: the configfs-tsm
// root; kTdxGuestDevice: the device), naming the path and what provides it. Opening
// /dev/tdx_guest may also fail with kPermissionDenied. Errors of the simulator's constructor pass
// through (e.g. an unreadable state dir). Nothing here probes configfs; DetectTeeKind does.
absl::StatusOr<std::unique_ptr<TeeProvider>> MakeTeeProvider(TeeKind kind,
                                                             const TeeOptions& options);

class TsmReportFs;  // lib/tee/configfs_tsm.h

struct DetectOptions {
  std::string configfs_tsm_root = kDefaultConfigfsTsmRoot;
  std::string tdx_guest_device = kDefaultTdxGuestDevice;
  // Stands in for the file system at configfs_tsm_root (tests); null: the real one. Borrowed;
  // must outlive the call.
  TsmReportFs* tsm_fs = nullptr;
};

// Which hardware TEE this machine offers, best first:
//   kConfigfsTsm     configfs-tsm whose provider is tdx_guest (probed by making, reading and
//                    removing one report entry, so it needs the rights GetQuote needs);
//   kTdxGuestDevice  otherwise, when the tdx_guest device exists.
// kFailedPrecondition "no TDX interface found (looked at …); use --tee=simulated for development"
// otherwise, listing each path and why it did not qualify. Never returns kSimulated: the
// simulator is chosen only by name. Thread-safe.
absl::StatusOr<TeeKind> DetectTeeKind(const DetectOptions& options);

}  // namespace pml::tee
