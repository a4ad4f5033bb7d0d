#include "lib/gpu/online.h"

#include <mutex>

#include <curl/curl.h>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/crypto/x509_ext.h"
#include "lib/gpu/errors.h"

namespace pml::gpu {
namespace {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlFree>;
struct SlistFree {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

struct Sink {
  std::string* out;
  size_t max;
  bool overflow = false;
};

size_t Write(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t len = size * n;
  if (sink->out->size() + len > sink->max) {
    sink->overflow = true;
    return 0;
  }
  sink->out->append(data, len);
  return len;
}

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(HttpOptions options) : options_(std::move(options)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  absl::StatusOr<HttpResponse> Get(const std::string& url) override { return Do(url, nullptr, ""); }
  absl::StatusOr<HttpResponse> Post(const std::string& url, absl::string_view content_type,
                                    absl::string_view body) override {
    return Do(url, &body, content_type);
  }

 private:
  absl::StatusOr<HttpResponse> Do(const std::string& url, const absl::string_view* body,
                                  absl::string_view content_type) {
    CurlPtr curl(curl_easy_init());
    if (curl == nullptr)
      return absl::InternalError("curl_easy_init failed");
    HttpResponse resp;
    Sink sink{&resp.body, options_.max_body_bytes};
    SlistPtr headers;
    auto add_header = [&headers](const std::string& h) {
      curl_slist* next = curl_slist_append(headers.get(), h.c_str());
      if (next != nullptr) {
        (void)headers.release();
        headers.reset(next);
      }
    };
    if (!options_.bearer_token.empty())
      add_header("Authorization: Bearer " + options_.bearer_token);
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, Write);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 0L);
    if (body != nullptr) {
      add_header(absl::StrCat("Content-Type: ", content_type));
      curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
      curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    if (headers != nullptr)
      curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
    const CURLcode rc = curl_easy_perform(curl.get());
    if (sink.overflow) {
      return absl::ResourceExhaustedError(
          absl::StrCat("response body exceeds ", options_.max_body_bytes, " bytes"));
    }
    if (rc != CURLE_OK) {
      return absl::UnavailableError(absl::StrCat("request failed: ", curl_easy_strerror(rc)));
    }
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &resp.status);
    if (resp.status == 0)
      resp.status = 200;  // file:// URLs have no HTTP status
    return resp;
  }

  HttpOptions options_;
};

}  // namespace

std::unique_ptr<HttpClient> MakeCurlHttpClient(HttpOptions options) {
  return std::make_unique<CurlHttpClient>(std::move(options));
}

absl::StatusOr<std::vector<uint8_t>> HttpOcspSource::GetResponse(const X509& cert,
                                                                 const X509& issuer,
                                                                 absl::Span<const uint8_t> nonce) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> req, crypto::BuildOcspRequest(cert, issuer, nonce));
  auto resp = http_->Post(url_, "application/ocsp-request",
                          absl::string_view(reinterpret_cast<const char*>(req.data()), req.size()));
  if (!resp.ok()) {
    return MakeError(absl::StatusCode::kUnavailable, error_class::kOcspUnavailable,
                     resp.status().message());
  }
  if (resp->status != 200) {
    return MakeError(absl::StatusCode::kUnavailable, error_class::kOcspUnavailable,
                     absl::StrCat("responder answered HTTP ", resp->status));
  }
  return std::vector<uint8_t>(resp->body.begin(), resp->body.end());
}

absl::StatusOr<std::string> RimServiceSource::GetRim(absl::string_view rim_id) {
  if (!IsValidRimId(rim_id)) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kRimMalformed,
                     "RIM id has characters outside [A-Za-z0-9._-]");
  }
  auto resp = http_->Get(absl::StrCat(base_url_, rim_id));
  if (resp.ok() && resp->status == 404) {
    return MakeError(absl::StatusCode::kNotFound, error_class::kRimNotFound, rim_id);
  }
  if (resp.ok() && resp->status == 200) {
    PML_ASSIGN_OR_RETURN(std::string xml, DecodeRimServiceResponse(resp->body, rim_id));
    if (!cache_dir_.empty()) {
      // Best effort: a failed cache write only loses the offline fallback.
      core::WriteFileAtomic(absl::StrCat(cache_dir_, "/", rim_id, ".json"), resp->body)
          .IgnoreError();
    }
    return xml;
  }
  const std::string why =
      resp.ok() ? absl::StrCat("HTTP ", resp->status) : std::string(resp.status().message());
  if (!cache_dir_.empty()) {
    DirectoryRimSource cached(cache_dir_);
    auto xml = cached.GetRim(rim_id);
    if (xml.ok())
      return xml;
  }
  return MakeError(absl::StatusCode::kUnavailable, error_class::kRimServiceUnavailable,
                   absl::StrCat(rim_id, ": ", why));
}

}  // namespace pml::gpu
