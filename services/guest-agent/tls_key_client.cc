#include "services/guest-agent/tls_key_client.h"

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/x509.h"

namespace pml::guest {
namespace {

using Json = nlohmann::json;
using CurlPtr = std::unique_ptr<CURL, crypto::CDeleter<curl_easy_cleanup>>;
using CurlListPtr = std::unique_ptr<curl_slist, crypto::CDeleter<curl_slist_free_all>>;

// A /GetTlsKey answer is a key and three certificates (a few KB, more with a quote and an event
// log in the leaf); anything far larger is not the agent.
constexpr size_t kMaxResponseBytes = 4 << 20;
constexpr size_t kMaxChainCertificates = 8;

// Wipes a string's bytes (it held key material).
void Cleanse(std::string& s) {
  if (!s.empty()) {
    OPENSSL_cleanse(s.data(), s.size());
  }
  s.clear();
}

struct Response {
  std::string body;
  bool too_large = false;
  ~Response() { Cleanse(body); }
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  const size_t len = size * n;
  if (r->body.size() + len > kMaxResponseBytes) {
    r->too_large = true;
    return 0;  // aborts the transfer
  }
  r->body.append(data, len);
  return len;
}

absl::StatusCode CodeForHttp(long status) {  // NOLINT(google-runtime-int): curl's type
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kFailedPrecondition;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

std::string TlsKeyRequestJson(const TlsKeyClientOptions& o) {
  Json j = {{"subject", o.subject},
            {"usage_ra_tls", o.ra_tls},
            {"usage_server_auth", true},
            {"usage_client_auth", false}};
  if (!o.alt_names.empty()) {
    j["alt_names"] = o.alt_names;
  }
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::StatusOr<TlsKeyFiles> ParseTlsKeyResponse(absl::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  // The key's text lives in `j` too: wipe it whatever happens below.
  struct Wipe {
    Json& j;
    ~Wipe() {
      if (j.is_object() && j.contains("key") && j["key"].is_string()) {
        Cleanse(j["key"].get_ref<std::string&>());
      }
    }
  } wipe{j};
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the /GetTlsKey answer is not a JSON object");
  }
  if (!j.contains("key") || !j["key"].is_string() ||
      j["key"].get_ref<const std::string&>().empty()) {
    return absl::InvalidArgumentError("the /GetTlsKey answer: key: want a PEM string");
  }
  if (!j.contains("certificate_chain") || !j["certificate_chain"].is_array() ||
      j["certificate_chain"].empty() || j["certificate_chain"].size() > kMaxChainCertificates) {
    return absl::InvalidArgumentError(
        absl::StrCat("the /GetTlsKey answer: certificate_chain: want 1 to ", kMaxChainCertificates,
                     " PEM strings"));
  }
  auto key = crypto::PrivateKeyFromPem(j["key"].get_ref<const std::string&>());
  if (!key.ok()) {
    return absl::InvalidArgumentError("the /GetTlsKey answer: key: not a PEM private key");
  }
  TlsKeyFiles out;
  const Json& chain = j["certificate_chain"];
  std::vector<uint8_t> leaf_spki;
  for (size_t i = 0; i < chain.size(); ++i) {
    if (!chain[i].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the /GetTlsKey answer: certificate_chain[", i, "]: want a PEM string"));
    }
    auto certs = crypto::ParsePemCertificates(chain[i].get_ref<const std::string&>(), 1);
    if (!certs.ok() || certs->size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("the /GetTlsKey answer: certificate_chain[", i,
                                                     "]: want one PEM certificate"));
    }
    // Re-encoded: the file holds exactly the certificates, whatever text surrounded them.
    PML_ASSIGN_OR_RETURN(std::string pem, crypto::CertificateToPem(*(*certs)[0]));
    if (pem.empty() || pem.back() != '\n') {
      pem.push_back('\n');
    }
    absl::StrAppend(&out.chain_pem, pem);
    if (i == 0) {
      PML_ASSIGN_OR_RETURN(const EVP_PKEY* pub, crypto::CertificatePublicKey(*(*certs)[0]));
      PML_ASSIGN_OR_RETURN(leaf_spki, crypto::PublicKeyToDer(*pub));
    }
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> key_spki, crypto::PublicKeyToDer(**key));
  if (key_spki != leaf_spki) {
    return absl::InvalidArgumentError(
        "the /GetTlsKey answer: certificate_chain[0] is not the key's certificate");
  }
  PML_ASSIGN_OR_RETURN(out.key_pem, crypto::PrivateKeyToPem(**key));
  return out;
}

absl::StatusOr<TlsKeyFiles> RequestTlsKey(const TlsKeyClientOptions& o) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CurlPtr curl(curl_easy_init());
  if (curl == nullptr) {
    return absl::InternalError("curl_easy_init failed");
  }
  CurlListPtr headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  if (headers == nullptr) {
    return absl::InternalError("curl_slist_append failed");
  }
  const std::string request = TlsKeyRequestJson(o);
  Response r;
  char error[CURL_ERROR_SIZE] = {0};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, o.socket_path.c_str());
  // The host is not used on a unix socket; "localhost" is what the SDK sends.
  curl_easy_setopt(h, CURLOPT_URL, "http://localhost/GetTlsKey");
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(o.timeout)));  // NOLINT
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.size()));  // NOLINT
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  const CURLcode rc = curl_easy_perform(h);
  if (r.too_large) {
    return absl::InvalidArgumentError(
        absl::StrCat("the /GetTlsKey answer is larger than ", kMaxResponseBytes, " bytes"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("the agent's socket ", o.socket_path, ": ",
                                               error[0] ? error : curl_easy_strerror(rc)));
  }
  long status = 0;  // NOLINT(google-runtime-int): curl's type
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    // Error answers carry no key: {"error": "..."}.
    const Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    std::string message = "no error message";
    if (j.is_object() && j.contains("error") && j["error"].is_string()) {
      message = j["error"].get<std::string>().substr(0, 300);
    }
    return absl::Status(CodeForHttp(status),
                        absl::StrCat("the agent answered HTTP ", status, ": ", message));
  }
  return ParseTlsKeyResponse(r.body);
}

absl::Status WriteTlsKeyFiles(const TlsKeyFiles& files, const std::string& key_path,
                              const std::string& chain_path) {
  const absl::Span<const uint8_t> key = files.key_pem.span();
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(
      key_path, absl::string_view(reinterpret_cast<const char*>(key.data()), key.size()), 0600));
  return core::WriteFileAtomic(chain_path, files.chain_pem, 0644);
}

}  // namespace pml::guest
