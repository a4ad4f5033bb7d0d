#include "lib/tdx/pcs_client.h"

#include <curl/curl.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/ossl.h"

namespace pml::tdx {
namespace {

using CurlPtr = std::unique_ptr<CURL, crypto::CDeleter<curl_easy_cleanup>>;

// Collateral responses are tens of KB; the largest (a processor-CA CRL) a few hundred KB.
constexpr size_t kMaxResponseBytes = 32 << 20;
constexpr size_t kMaxHeaderBytes = 256 << 10;

struct HttpResponse {
  long status = 0;  // NOLINT(google-runtime-int): curl's type
  std::string body;
  absl::flat_hash_map<std::string, std::string> headers;  // lower-case names
  size_t header_bytes = 0;
  bool too_large = false;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<HttpResponse*>(user);
  const size_t len = size * n;
  if (r->body.size() + len > kMaxResponseBytes) {
    r->too_large = true;
    return 0;  // aborts the transfer
  }
  r->body.append(data, len);
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<HttpResponse*>(user);
  const size_t len = size * n;
  r->header_bytes += len;
  if (r->header_bytes > kMaxHeaderBytes) {
    r->too_large = true;
    return 0;
  }
  const absl::string_view line(data, len);
  if (absl::StartsWith(line, "HTTP/")) {
    r->headers.clear();  // a new response (after a redirect or 100-continue)
    return len;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return len;
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  r->headers[name] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  return len;
}

absl::Status StatusFromHttp(long code, absl::string_view url) {  // NOLINT(google-runtime-int)
  const std::string what = absl::StrCat("GET ", url.substr(0, 200), " answered ", code);
  if (code == 404) return absl::NotFoundError(what);
  if (code == 401 || code == 403) return absl::PermissionDeniedError(what);
  if (code == 429 || code >= 500) return absl::UnavailableError(what);
  return absl::InvalidArgumentError(what);
}

class PcsSource final : public CollateralSource {
 public:
  explicit PcsSource(PcsOptions options) : options_(std::move(options)) {
    while (absl::EndsWith(options_.base_url, "/")) options_.base_url.pop_back();
  }

  absl::StatusOr<Collateral> GetCollateral(const Fmspc& fmspc, PckCaType ca,
                                           bool is_tdx) override {
    const std::string tee = is_tdx ? "tdx" : "sgx";
    const std::string update = options_.update.empty() ? "" : absl::StrCat("update=", options_.update);
    Collateral c;

    const std::string tcb_url =
        absl::StrCat(options_.base_url, "/", tee, "/certification/v4/tcb?fmspc=",
                     absl::AsciiStrToUpper(core::HexEncode(fmspc)),
                     update.empty() ? "" : "&", update);
    PML_ASSIGN_OR_RETURN(HttpResponse tcb, Get(tcb_url));
    PML_ASSIGN_OR_RETURN(SignedJsonBody tcb_body, ParsePcsSignedJson(tcb.body, "tcbInfo"));
    c.tcb_info_body = std::move(tcb_body.body);
    c.tcb_info_signature = std::move(tcb_body.signature);
    PML_ASSIGN_OR_RETURN(c.tcb_info_issuer_chain,
                         Header(tcb, {"tcb-info-issuer-chain", "sgx-tcb-info-issuer-chain"},
                                tcb_url));

    const std::string qe_url = absl::StrCat(options_.base_url, "/", tee,
                                            "/certification/v4/qe/identity",
                                            update.empty() ? "" : "?", update);
    PML_ASSIGN_OR_RETURN(HttpResponse qe, Get(qe_url));
    PML_ASSIGN_OR_RETURN(SignedJsonBody qe_body, ParsePcsSignedJson(qe.body, "enclaveIdentity"));
    c.qe_identity_body = std::move(qe_body.body);
    c.qe_identity_signature = std::move(qe_body.signature);
    PML_ASSIGN_OR_RETURN(c.qe_identity_issuer_chain,
                         Header(qe, {"sgx-enclave-identity-issuer-chain"}, qe_url));

    const std::string crl_url = absl::StrCat(options_.base_url, "/sgx/certification/v4/pckcrl?ca=",
                                             PckCaTypeName(ca), "&encoding=der");
    PML_ASSIGN_OR_RETURN(HttpResponse crl, Get(crl_url));
    PML_ASSIGN_OR_RETURN(c.pck_crl, DecodeCrlBytes(core::AsBytes(crl.body)));
    PML_ASSIGN_OR_RETURN(c.pck_crl_issuer_chain,
                         Header(crl, {"sgx-pck-crl-issuer-chain"}, crl_url));

    const std::string root_url = options_.root_ca_crl_url.empty()
                                     ? absl::StrCat(options_.base_url,
                                                    "/sgx/certification/v4/rootcacrl")
                                     : options_.root_ca_crl_url;
    PML_ASSIGN_OR_RETURN(HttpResponse root, Get(root_url));
    PML_ASSIGN_OR_RETURN(c.root_ca_crl, DecodeCrlBytes(core::AsBytes(root.body)));
    return c;
  }

 private:
  absl::StatusOr<HttpResponse> Get(const std::string& url) const {
    CurlPtr curl(curl_easy_init());
    if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
    HttpResponse r;
    char error[CURL_ERROR_SIZE] = {0};
    CURL* h = curl.get();
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));  // NOLINT
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    const CURLcode rc = curl_easy_perform(h);
    if (r.too_large) {
      return absl::InvalidArgumentError(absl::StrCat("GET ", url.substr(0, 200),
                                                     ": response is too large"));
    }
    if (rc != CURLE_OK) {
      return absl::UnavailableError(absl::StrCat("GET ", url.substr(0, 200), ": ",
                                                 error[0] ? error : curl_easy_strerror(rc)));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    if (r.status != 200) return StatusFromHttp(r.status, url);
    return r;
  }

  static absl::StatusOr<std::string> Header(const HttpResponse& r,
                                            std::initializer_list<absl::string_view> names,
                                            absl::string_view url) {
    for (absl::string_view name : names) {
      auto it = r.headers.find(name);
      if (it != r.headers.end()) return PercentDecode(it->second);
    }
    return absl::InvalidArgumentError(absl::StrCat("GET ", url.substr(0, 200), ": no ",
                                                   *names.begin(), " header"));
  }

  PcsOptions options_;
};

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) {
      return absl::InvalidArgumentError(absl::StrCat("truncated percent escape at ", i));
    }
    auto byte = core::HexDecode(text.substr(i + 1, 2));
    if (!byte.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("bad percent escape at ", i));
    }
    out.push_back(static_cast<char>((*byte)[0]));
    i += 2;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CollateralSource>> MakePcsSource(PcsOptions options) {
  if (!absl::StartsWith(options.base_url, "https://") &&
      !absl::StartsWith(options.base_url, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("pcs base url \"", options.base_url.substr(0, 100), "\" is not http(s)"));
  }
  return std::make_unique<PcsSource>(std::move(options));
}

}  // namespace pml::tdx
