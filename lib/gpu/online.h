#pragma once
// Online sources for lib/gpu (target pml_gpu_online, the only one that links libcurl): OCSP
// queries to NVIDIA's responder (with a fresh nonce per request) and RIM downloads from NVIDIA's
// RIM service (spec §4, §5, §9). Both go through an HttpClient, so tests and air-gapped mirrors
// (Trust Outpost) can substitute the transport or the base URL.
//
// Thread-safety: all classes are thread-safe (a curl easy handle per request).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/verify.h"

namespace pml::gpu {

inline constexpr absl::string_view kNvidiaOcspUrl = "http://ocsp.ndis.nvidia.com";
inline constexpr absl::string_view kNvidiaRimServiceUrl =
    "https://rim.attestation.nvidia.com/v1/rim/";

struct HttpResponse {
  long status = 0;
  std::string body;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // GET / POST `url`. kUnavailable on a transport failure (with curl's reason); any HTTP status
  // is a response.
  virtual absl::StatusOr<HttpResponse> Get(const std::string& url) = 0;
  virtual absl::StatusOr<HttpResponse> Post(const std::string& url, absl::string_view content_type,
                                            absl::string_view body) = 0;
};

struct HttpOptions {
  absl::Duration timeout = absl::Seconds(10);
  std::string bearer_token;  // optional "Authorization: Bearer" (NVIDIA service key)
  size_t max_body_bytes = 8 << 20;
};

// libcurl transport (http, https, and file URLs).
std::unique_ptr<HttpClient> MakeCurlHttpClient(HttpOptions options = {});

// OcspSource that POSTs an OCSP request (SHA-1 CertID, nonce extension) to `url`.
// kUnavailable "OCSP_UNAVAILABLE: ..." when the responder cannot be reached or answers non-200.
class HttpOcspSource final : public OcspSource {
 public:
  explicit HttpOcspSource(std::unique_ptr<HttpClient> http,
                          std::string url = std::string(kNvidiaOcspUrl))
      : http_(std::move(http)), url_(std::move(url)) {}
  absl::StatusOr<std::vector<uint8_t>> GetResponse(const X509& cert, const X509& issuer,
                                                   absl::Span<const uint8_t> nonce) override;
  bool SendsNonce() const override { return true; }
  // An unreachable responder is asked again after this long (Verifier failure cache).
  absl::Duration FailureTtl() const override { return failure_ttl_; }
  void set_failure_ttl(absl::Duration ttl) { failure_ttl_ = ttl; }

 private:
  std::unique_ptr<HttpClient> http_;
  std::string url_;
  absl::Duration failure_ttl_ = absl::Seconds(30);
};

// RimSource over NVIDIA's RIM service: GET <base><id>, decoded and checked with
// DecodeRimServiceResponse. 404 -> kNotFound "RIM_NOT_FOUND"; other failures -> kUnavailable
// "RIM_SERVICE_UNAVAILABLE". With a cache directory, each fetched response is stored as
// "<dir>/<id>.json" (readable by DirectoryRimSource) and served from there when the service is
// unavailable.
class RimServiceSource final : public RimSource {
 public:
  explicit RimServiceSource(std::unique_ptr<HttpClient> http,
                            std::string base_url = std::string(kNvidiaRimServiceUrl),
                            std::string cache_dir = "")
      : http_(std::move(http)), base_url_(std::move(base_url)), cache_dir_(std::move(cache_dir)) {}
  absl::StatusOr<std::string> GetRim(absl::string_view rim_id) override;

 private:
  std::unique_ptr<HttpClient> http_;
  std::string base_url_;
  std::string cache_dir_;
};

}  // namespace pml::gpu
