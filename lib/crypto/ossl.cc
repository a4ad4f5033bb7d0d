#include "lib/crypto/ossl.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace pml::crypto {

void ClearOpensslErrors() { ERR_clear_error(); }

absl::Status OpensslError(absl::string_view context, absl::StatusCode code) {
  const unsigned long first = ERR_get_error();  // NOLINT(google-runtime-int): OpenSSL's type
  std::string reason = "unknown error";
  if (first != 0) {
    char buf[256];
    ERR_error_string_n(first, buf, sizeof(buf));
    reason = buf;
  }
  ERR_clear_error();
  return absl::Status(code, absl::StrCat(context, ": ", reason));
}

BioPtr MemBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

}  // namespace pml::crypto
