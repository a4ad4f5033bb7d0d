#include "tools/pmlctl/verify_gpu_cmd.h"

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/online.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/sources.h"
#include "lib/gpu/verify.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

constexpr size_t kMaxEvidenceFileBytes = 64 << 20;

absl::Status Usage(absl::string_view what) { return absl::InvalidArgumentError(what); }

// A report file: binary, or hex text as NVIDIA's samples are.
absl::StatusOr<std::vector<uint8_t>> ReadReportFile(const std::string& path) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, core::ReadFileBytes(path, 1 << 20));
  const bool text = !bytes.empty() && std::all_of(bytes.begin(), bytes.end(), [](uint8_t c) {
    return absl::ascii_isxdigit(c) || absl::ascii_isspace(c);
  });
  if (!text)
    return bytes;
  return gpu::DecodeHexReport(core::ToString(bytes));
}

struct Inputs {
  std::vector<gpu::DeviceEvidence> gpus, switches;
  std::optional<gpu::Nonce> nonce;
  gpu::StaticRimSource rims;
  gpu::CachedOcspSource ocsp;
  bool have_ocsp = false;
};

absl::Status LoadEvidence(const VerifyGpuOptions& o, Inputs& in) {
  auto load = [&](const std::vector<std::string>& paths,
                  std::vector<gpu::DeviceEvidence>& into) -> absl::Status {
    for (const auto& p : paths) {
      PML_ASSIGN_OR_RETURN(std::string json, core::ReadFile(p, kMaxEvidenceFileBytes));
      auto parsed = gpu::ParseEvidenceJson(json);
      if (!parsed.ok())
        return core::Annotate(parsed.status(), p);
      for (auto& e : *parsed)
        into.push_back(std::move(e));
    }
    return absl::OkStatus();
  };
  PML_RETURN_IF_ERROR(load(o.evidence_paths, in.gpus));
  PML_RETURN_IF_ERROR(load(o.switch_evidence_paths, in.switches));
  if (!o.report_path.empty()) {
    if (o.cert_chain_path.empty())
      return Usage("--report needs --cert-chain");
    gpu::DeviceEvidence e;
    PML_ASSIGN_OR_RETURN(e.report, ReadReportFile(o.report_path));
    PML_ASSIGN_OR_RETURN(e.certificate_chain, core::ReadFile(o.cert_chain_path, 1 << 20));
    if (!o.arch.empty()) {
      PML_ASSIGN_OR_RETURN(gpu::Arch a, gpu::ParseArch(o.arch));
      e.arch = a;
    }
    const bool is_switch = e.arch.has_value() && gpu::IsSwitch(*e.arch);
    (is_switch ? in.switches : in.gpus).push_back(std::move(e));
  } else if (!o.cert_chain_path.empty()) {
    return Usage("--cert-chain needs --report");
  }
  if (in.gpus.empty() && in.switches.empty())
    return Usage("no evidence: give --evidence, --switch-evidence or --report");
  // A set of switches alone (an NVSwitch report) is verified as GPUs would be: VerifyEach
  // reports each device on its own.
  if (!o.nonce.empty()) {
    std::string text = o.nonce;
    if (absl::StartsWith(text, "@")) {
      PML_ASSIGN_OR_RETURN(text, core::ReadFile(text.substr(1), 4096));
    }
    PML_ASSIGN_OR_RETURN(gpu::Nonce n, gpu::ParseNonceHex(text));
    in.nonce = n;
  } else {
    for (const auto* list : {&in.gpus, &in.switches}) {
      for (const auto& e : *list) {
        if (e.nonce.has_value() && !in.nonce.has_value())
          in.nonce = e.nonce;
      }
    }
    if (!in.nonce.has_value())
      return Usage("no nonce: the evidence carries none, give --nonce HEX or --nonce @FILE");
  }
  for (const auto& r : o.rims) {
    std::string id, path = r;
    if (const size_t eq = r.find('='); eq != std::string::npos) {
      id = r.substr(0, eq);
      path = r.substr(eq + 1);
    } else {
      id = std::filesystem::path(r).stem().string();
    }
    // NVIDIA's ids: NV_GPU_DRIVER_<chip>_<version>, NV_GPU_VBIOS_..., NV_SWITCH_BIOS_...
    if (!gpu::IsValidRimId(id) || !absl::StartsWith(id, "NV_")) {
      return Usage(absl::StrCat("--rim ", r, ": \"", id,
                                "\" is not a RIM id; give it as ID=FILE (e.g. "
                                "NV_GPU_DRIVER_GH100_595.71.05=driver.xml)"));
    }
    PML_ASSIGN_OR_RETURN(std::string content, core::ReadFile(path, gpu::kMaxRimBytes));
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(content), "{")) {
      PML_ASSIGN_OR_RETURN(content, gpu::DecodeRimServiceResponse(content, id));
    }
    in.rims.Add(id, std::move(content));
  }
  for (const auto& p : o.ocsp_paths) {
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, core::ReadFileBytes(p, 1 << 20));
    absl::Status s = in.ocsp.Add(der);
    if (!s.ok())
      return core::Annotate(s, p);
    in.have_ocsp = true;
  }
  return absl::OkStatus();
}

void PrintDevice(std::ostream& out, absl::string_view name,
                 const absl::StatusOr<gpu::VerifiedGpu>& v) {
  if (!v.ok()) {
    out << name << ": REJECTED " << v.status().message() << "\n";
    return;
  }
  out << name << ": " << (v->Passed() ? "PASSED" : "FAILED")
      << (v->simulated() ? " (SIMULATED)" : "") << "  " << gpu::ArchName(v->arch());
  if (!v->is_switch())
    out << "  driver " << v->driver_version();
  out << "  " << (v->is_switch() ? "bios " : "vbios ") << v->vbios_version() << "\n";
  out << "  hwmodel " << v->hwmodel() << "  ueid " << v->ueid() << "\n";
  out << "  measurements " << (v->measres() ? "match" : "do not match") << " ("
      << v->measurements().compared << " compared, " << v->measurements().mismatches.size()
      << " mismatched)  device chain " << v->device_chain().cert_status << ", ocsp "
      << v->device_chain().ocsp_status << "\n";
  for (const auto& f : v->Failures())
    out << "  - " << f << "\n";
}

}  // namespace

int RunVerifyGpu(const VerifyGpuOptions& o, std::ostream& out, std::ostream& err) {
  if (!o.extras.empty()) {
    err << "pmlctl verify gpu: unexpected argument " << o.extras[0] << "\n";
    return kVerifyExitUsage;
  }
  Inputs in;
  if (absl::Status s = LoadEvidence(o, in); !s.ok()) {
    err << "pmlctl verify gpu: " << s.message() << "\n";
    return kVerifyExitUsage;
  }
  absl::Time now = absl::Now();
  if (!o.at.empty()) {
    auto t = ParseVerifyTime(o.at);
    if (!t.ok()) {
      err << "pmlctl verify gpu: --at: " << t.status().message() << "\n";
      return kVerifyExitUsage;
    }
    now = *t;
  }
  std::unique_ptr<gpu::RimSource> dir_rims, online_rims;
  std::unique_ptr<gpu::OcspSource> online_ocsp;
  std::vector<gpu::RimSource*> rim_sources{&in.rims};
  if (!o.rim_dir.empty()) {
    dir_rims = std::make_unique<gpu::DirectoryRimSource>(o.rim_dir);
    rim_sources.push_back(dir_rims.get());
  }
  if (o.online) {
    online_rims = std::make_unique<gpu::RimServiceSource>(gpu::MakeCurlHttpClient());
    online_ocsp = std::make_unique<gpu::HttpOcspSource>(gpu::MakeCurlHttpClient());
    rim_sources.push_back(online_rims.get());
  }
  gpu::FirstOfRimSource rims(rim_sources);
  gpu::StoredThenOnlineOcsp ocsp(&in.ocsp, online_ocsp.get());

  gpu::VerifyOptions vo;
  vo.now = now;
  vo.rims = &rims;
  vo.ocsp = (in.have_ocsp || o.online) ? &ocsp : nullptr;
  vo.policy.require_ocsp = !o.allow_missing_ocsp;
  const gpu::TrustAnchors anchors = o.trust_simulated_tee
                                        ? gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot()
                                        : gpu::TrustAnchors::NvidiaDefault();
  gpu::Verifier verifier(anchors);
  const gpu::SetOutcome set = verifier.VerifyEach(in.gpus, in.switches, *in.nonce, vo);

  if (o.json) {
    nlohmann::json j = set.Claims();
    if (set.simulated())
      j["x-pml-simulated"] = true;
    out << j.dump(2) << "\n";
  } else {
    out << "nonce " << core::HexEncode(*in.nonce) << "  at " << gpu::FormatClaimTime(now)
        << (o.online ? "  online" : "  offline")
        << (o.allow_missing_ocsp ? "  (OCSP not required)" : "") << "\n";
    for (size_t i = 0; i < set.gpus.size(); ++i)
      PrintDevice(out, absl::StrCat("GPU-", i), set.gpus[i]);
    for (size_t i = 0; i < set.switches.size(); ++i)
      PrintDevice(out, absl::StrCat("SWITCH-", i), set.switches[i]);
    if (set.topology.has_value()) {
      out << "PPCIe topology: "
          << (set.topology->ok() ? "ok" : std::string(set.topology->message())) << "\n";
    }
    out << "overall: " << (set.Passed() ? "PASSED" : "NOT PASSED")
        << (set.simulated() ? " (SIMULATED evidence: proves nothing)" : "") << "\n";
  }
  return set.Passed() ? kVerifyExitVerified : kVerifyExitRejected;
}

void AddVerifyGpuCommand(CLI::App& verify) {
  auto o = std::make_shared<VerifyGpuOptions>();
  auto* gpu = verify.add_subcommand(
      "gpu",
      "verify NVIDIA GPU / NVSwitch evidence (SPDM report, device chain to NVIDIA's pinned root,\n"
      "FWID, nonce, RIM measurements, OCSP), offline unless --online. Exit 0 when every device\n"
      "passed NVIDIA's default policy, 1 when not (reasons printed), 2 on usage/IO errors");
  gpu->allow_extras();
  gpu->add_option("--evidence", o->evidence_paths,
                  "GPU evidence JSON: an NVAT/PPCIe array of {arch, nonce, evidence, certificate}"
                  " or an NRAS request body (repeatable)");
  gpu->add_option("--switch-evidence", o->switch_evidence_paths,
                  "NVSwitch evidence JSON, same formats (PPCIe: the topology is checked)");
  gpu->add_option("--report", o->report_path, "one SPDM report, binary or hex text");
  gpu->add_option("--cert-chain", o->cert_chain_path, "the report's PEM certificate chain");
  gpu->add_option("--arch", o->arch, "architecture the report claims (HOPPER, BLACKWELL, LS10)");
  gpu->add_option("--nonce", o->nonce,
                  "the expected 32-byte nonce: 64 hex digits, or @FILE (default: the evidence "
                  "JSON's nonce)");
  gpu->add_option("--rim", o->rims,
                  "a RIM file (SWID XML or RIM-service JSON), named <RIM id>.xml or given as "
                  "ID=FILE (repeatable)");
  gpu->add_option("--rim-dir", o->rim_dir, "directory of RIMs (<id>.xml or <id>.json)");
  gpu->add_option("--ocsp", o->ocsp_paths,
                  "a DER OCSP response for a chain certificate "
                  "(repeatable)");
  gpu->add_option("--at", o->at, "verification time, RFC 3339 or unix seconds (default: now)");
  gpu->add_flag("--online", o->online,
                "fetch missing RIMs from NVIDIA's RIM service and ask NVIDIA's OCSP responder");
  gpu->add_flag("--allow-missing-ocsp", o->allow_missing_ocsp,
                "do not require OCSP responses in the verdict (offline checks of old evidence)");
  gpu->add_flag("--trust-simulated-tee", o->trust_simulated_tee,
                "UNSAFE: also trust the simulated GPU root of lib/tee (results say simulated)");
  gpu->add_flag("--json", o->json, "print NVIDIA-style claims as JSON");
  gpu->callback([gpu, o] {
    o->extras = gpu->remaining();
    const int code = RunVerifyGpu(*o, std::cout, std::cerr);
    std::cout.flush();
    throw CLI::RuntimeError(code);
  });
}

}  // namespace pml::pmlctl
