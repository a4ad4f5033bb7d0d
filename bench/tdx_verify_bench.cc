// pml-bench-tdx-verify: how fast lib/tdx verifies a real TDX quote, in one run on one thread,
// against the bound OpenSSL sets and against the npm peer @phala/dcap-qvl. A report, not a test:
// it always exits 0 unless it cannot run at all (then 2). See bench/README.md.
//
// Measured on the same vector (default tdx-v4-phala-b0c06f at its verify_at_unix):
//   warm   one tdx::Verifier reused: chains, CRLs and collateral signatures come from its caches,
//          so a verification costs two ECDSA P-256 checks (QE report, quote) plus parsing;
//   warm (source)  the same through a CollateralSource (the per-FMSPC path pml-verifier's cache
//          dir uses, which skips hashing the collateral bytes);
//   cold   a new tdx::Verifier per verification: every chain, CRL and signature checked again;
//   P-256  OpenSSL's own ECDSA P-256 verify of a 32-byte digest with a reused context (what
//          `openssl speed ecdsap256` measures). The warm bound is half of it.
// Rates are per second of this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so other load on a
// shared host skews them less; wall-clock rates are printed too.

#include <time.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/tcb_info.h"
#include "lib/tdx/trust_anchors.h"
#include "lib/tdx/verify.h"

namespace pml::bench {
namespace {

using Json = nlohmann::json;

struct Options {
  std::string vector_dir;
  double seconds = 2.0;
  std::string peer_script;
  bool peer = true;
  bool json = false;
};

struct Rate {
  uint64_t iterations = 0;
  double cpu_seconds = 0;
  double wall_seconds = 0;
  double PerCpuSecond() const {
    return cpu_seconds > 0 ? static_cast<double>(iterations) / cpu_seconds : 0;
  }
  double PerWallSecond() const {
    return wall_seconds > 0 ? static_cast<double>(iterations) / wall_seconds : 0;
  }
};

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Runs `fn` until `seconds` of thread CPU time have passed (at least 10 times). `fn` returns
// false to abort (a verification that stopped verifying).
std::optional<Rate> Measure(double seconds, const std::function<bool()>& fn) {
  for (int i = 0; i < 3; ++i) {
    if (!fn()) {
      return std::nullopt;  // warm-up
    }
  }
  Rate r;
  const double cpu0 = ThreadCpuSeconds();
  const auto wall0 = std::chrono::steady_clock::now();
  while (r.cpu_seconds < seconds || r.iterations < 10) {
    for (int i = 0; i < 8; ++i) {
      if (!fn()) {
        return std::nullopt;
      }
    }
    r.iterations += 8;
    r.cpu_seconds = ThreadCpuSeconds() - cpu0;
  }
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return r;
}

// Serves one collateral for every FMSPC (the bundle-file source does the same for one object).
class FixedSource final : public tdx::CollateralSource {
 public:
  explicit FixedSource(tdx::Collateral c) : c_(std::move(c)) {}
  absl::StatusOr<tdx::Collateral> GetCollateral(const tdx::Fmspc&, tdx::PckCaType, bool) override {
    return c_;
  }

 private:
  tdx::Collateral c_;
};

// OpenSSL's raw P-256 verify rate: one key, one signature over a 32-byte digest, a reused
// EVP_PKEY_CTX.
std::optional<Rate> MeasureP256(double seconds) {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  if (!key.ok()) {
    return std::nullopt;
  }
  const crypto::Sha256Digest digest = crypto::Sha256(absl::string_view("pml p-256 bench"));
  crypto::EvpPkeyCtxPtr sign_ctx(EVP_PKEY_CTX_new(key->get(), nullptr));
  std::array<uint8_t, 80> sig{};
  size_t sig_len = sig.size();
  if (sign_ctx == nullptr || EVP_PKEY_sign_init(sign_ctx.get()) != 1 ||
      EVP_PKEY_sign(sign_ctx.get(), sig.data(), &sig_len, digest.data(), digest.size()) != 1) {
    return std::nullopt;
  }
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key->get(), nullptr));
  if (ctx == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return std::nullopt;
  }
  return Measure(seconds, [&] {
    return EVP_PKEY_verify(ctx.get(), sig.data(), sig_len, digest.data(), digest.size()) == 1;
  });
}

// Runs the npm peer (tests/node/dcap_qvl_bench.js); its JSON line, or why it was skipped.
absl::StatusOr<Json> RunPeer(const Options& o, int64_t at_unix) {
  if (!core::PathExists(o.peer_script)) {
    return absl::NotFoundError(absl::StrCat(o.peer_script, " not found"));
  }
  const std::string cmd =
      absl::StrCat("node '", o.peer_script, "' '", o.vector_dir, "/quote.bin' '", o.vector_dir,
                   "/collateral.json' ", at_unix, " ", absl::StrFormat("%.3f", o.seconds), " 2>&1");
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (pipe == nullptr) {
    return absl::UnavailableError("cannot run node");
  }
  std::string output;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) {
    output.append(buf.data(), n);
  }
  const int rc = pclose(pipe.release());
  const size_t nl = output.find_last_of('\n', output.size() > 1 ? output.size() - 2 : 0);
  const std::string last = output.substr(nl == std::string::npos ? 0 : nl + 1);
  Json j = Json::parse(last, nullptr, /*allow_exceptions=*/false);
  if (rc != 0 || !j.is_object() || !j.contains("per_cpu_second")) {
    return absl::UnavailableError(absl::StrCat("peer failed (exit ", rc,
                                               "): ", output.substr(0, 300),
                                               " (install it with: cd tests/node && npm install)"));
  }
  return j;
}

std::string Verdict(double ratio) { return ratio >= 1.0 ? "PASS" : "FAIL"; }

int Run(const Options& o) {
  auto expected_text = core::ReadFile(o.vector_dir + "/expected.json");
  auto quote = core::ReadFileBytes(o.vector_dir + "/quote.bin");
  auto collateral = tdx::LoadCollateralJsonFile(o.vector_dir + "/collateral.json");
  if (!expected_text.ok() || !quote.ok() || !collateral.ok()) {
    std::fprintf(stderr, "pml-bench-tdx-verify: error: cannot read the vector %s\n",
                 o.vector_dir.c_str());
    return 2;
  }
  const Json expected = Json::parse(*expected_text, nullptr, false);
  if (!expected.is_object() || !expected.contains("verify_at_unix")) {
    std::fprintf(stderr, "pml-bench-tdx-verify: error: %s/expected.json has no verify_at_unix\n",
                 o.vector_dir.c_str());
    return 2;
  }
  const int64_t at_unix = expected["verify_at_unix"].get<int64_t>();
  const absl::Time at = absl::FromUnixSeconds(at_unix);
  const tdx::TrustAnchors anchors = tdx::TrustAnchors::IntelDefault();

  // The vector must verify, or its rate means nothing.
  tdx::Verifier warm_verifier(anchors);
  auto first = warm_verifier.Verify(*quote, *collateral, at);
  if (!first.ok()) {
    std::fprintf(stderr, "pml-bench-tdx-verify: error: the vector does not verify: %s\n",
                 std::string{first.status().message()}.c_str());
    return 2;
  }
  const std::string status(tdx::TcbStatusName(first->tcb_status()));

  auto warm =
      Measure(o.seconds, [&] { return warm_verifier.Verify(*quote, *collateral, at).ok(); });
  tdx::Verifier source_verifier(anchors);
  FixedSource source(*collateral);
  auto warm_source =
      Measure(o.seconds, [&] { return source_verifier.Verify(*quote, source, at).ok(); });
  auto cold = Measure(o.seconds, [&] {
    tdx::Verifier fresh(anchors);
    return fresh.Verify(*quote, *collateral, at).ok();
  });
  auto p256 = MeasureP256(o.seconds);
  if (!warm || !warm_source || !cold || !p256) {
    std::fprintf(stderr, "pml-bench-tdx-verify: error: a measured verification failed\n");
    return 2;
  }
  absl::StatusOr<Json> peer = absl::UnavailableError("disabled (--no-peer)");
  if (o.peer) {
    peer = RunPeer(o, at_unix);
  }

  const double bound = p256->PerCpuSecond() / 2;
  const double warm_ratio = warm->PerCpuSecond() / bound;
  const double warm_target = warm_ratio / 0.70;
  const double cold_target = cold->PerCpuSecond() / 1000.0;
  const double peer_rate = peer.ok() ? (*peer)["per_cpu_second"].get<double>() : 0;

  if (o.json) {
    Json j;
    j["vector"] = o.vector_dir;
    j["verify_at_unix"] = at_unix;
    j["tcb_status"] = status;
    auto rate = [](const Rate& r) {
      return Json{{"iterations", r.iterations},
                  {"per_cpu_second", r.PerCpuSecond()},
                  {"per_wall_second", r.PerWallSecond()}};
    };
    j["warm"] = rate(*warm);
    j["warm_source"] = rate(*warm_source);
    j["cold"] = rate(*cold);
    j["openssl_p256_verify"] = rate(*p256);
    j["bound"] = bound;
    j["warm_over_bound"] = warm_ratio;
    j["warm_target"] = {{"ratio", warm_target}, {"verdict", Verdict(warm_target)}};
    j["cold_target"] = {{"ratio", cold_target}, {"verdict", Verdict(cold_target)}};
    if (peer.ok()) {
      j["peer"] = *peer;
      j["warm_over_peer"] = warm->PerCpuSecond() / peer_rate;
    } else {
      j["peer"] = {{"skipped", std::string{peer.status().message()}}};
    }
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("pml-bench-tdx-verify: %s at %s (%s), one thread, %.1f s CPU per measurement\n",
              o.vector_dir.c_str(),
              absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", at, absl::UTCTimeZone()).c_str(),
              status.c_str(), o.seconds);
  std::printf("  rates per CPU-second (per wall-second in brackets)\n");
  auto row = [](const char* name, const Rate& r, const char* unit) {
    std::printf("  %-40s %9.0f %s/s  [%9.0f]  %8.1f us each\n", name, r.PerCpuSecond(), unit,
                r.PerWallSecond(), 1e6 / r.PerCpuSecond());
  };
  row("warm cache (quote + collateral bytes)", *warm, "verifications");
  row("warm cache (collateral source)", *warm_source, "verifications");
  row("cold cache (new Verifier each time)", *cold, "verifications");
  row("OpenSSL P-256 ECDSA verify", *p256, "verifies");
  std::printf("  %-40s %9.0f verifications/s (half the P-256 rate: 2 ECDSA checks)\n",
              "bound with a warm cache", bound);
  if (peer.ok()) {
    std::printf("  %-40s %9.0f verifications/s  [%9.0f]  (%s %s, node, status %s)\n",
                "peer @phala/dcap-qvl", peer_rate, (*peer)["per_second"].get<double>(),
                (*peer)["peer"].get<std::string>().c_str(),
                (*peer)["version"].get<std::string>().c_str(),
                (*peer)["status"].get<std::string>().c_str());
  } else {
    std::printf("  %-40s skipped: %s\n", "peer @phala/dcap-qvl",
                std::string{peer.status().message()}.c_str());
  }
  std::printf("targets\n");
  std::printf("  warm / bound        = %.2f  (target >= 0.70: %.2f of target)  %s\n", warm_ratio,
              warm_target, Verdict(warm_target).c_str());
  std::printf("  cold / 1000 per s   = %.2f  (target >= 1.00)  %s\n", cold_target,
              Verdict(cold_target).c_str());
  if (peer.ok()) {
    std::printf("  warm / peer         = %.1fx\n", warm->PerCpuSecond() / peer_rate);
    std::printf("  cold / peer         = %.1fx\n", cold->PerCpuSecond() / peer_rate);
  }
  return 0;
}

void Usage() {
  std::printf(
      "usage: pml-bench-tdx-verify [--vector DIR] [--seconds S] [--peer-script FILE] [--no-peer] "
      "[--json]\n"
      "  --vector DIR        a shared TDX vector (default %s)\n"
      "  --seconds S         CPU seconds per measurement (default 2)\n"
      "  --peer-script FILE  the @phala/dcap-qvl runner (default %s)\n"
      "  --no-peer           skip the npm peer\n"
      "  --json              one JSON object instead of the table\n",
      PML_BENCH_DEFAULT_VECTOR, PML_BENCH_PEER_SCRIPT);
}

}  // namespace
}  // namespace pml::bench

int main(int argc, char** argv) {
  pml::bench::Options o;
  o.vector_dir = PML_BENCH_DEFAULT_VECTOR;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read before any thread exists
  if (const char* shared = std::getenv("PML_SHARED_DIR"); shared != nullptr && *shared != '\0') {
    o.vector_dir = absl::StrCat(shared, "/vectors/tdx/tdx-v4-phala-b0c06f");
  }
  o.peer_script = PML_BENCH_PEER_SCRIPT;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--vector" && has_value) {
      o.vector_dir = argv[++i];
    } else if (a == "--seconds" && has_value) {
      if (!absl::SimpleAtod(argv[++i], &o.seconds) || !(o.seconds > 0)) {
        pml::bench::Usage();
        return 2;
      }
    } else if (a == "--peer-script" && has_value) {
      o.peer_script = argv[++i];
    } else if (a == "--no-peer") {
      o.peer = false;
    } else if (a == "--json") {
      o.json = true;
    } else {
      pml::bench::Usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  try {
    return pml::bench::Run(o);
  } catch (const std::exception& e) {  // nlohmann::json on a malformed peer answer, bad_alloc
    std::fprintf(stderr, "pml-bench-tdx-verify: error: %s\n", e.what());
    return 2;
  }
}
