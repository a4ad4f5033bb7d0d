#include "lib/tdx/errors.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace pml::tdx {
namespace {

bool IsExpiryClass(absl::string_view cls) {
  return cls == error_class::kCollateralExpired || cls == error_class::kCrlExpired ||
         cls == error_class::kTcbInfoExpired || cls == error_class::kQeIdentityExpired ||
         cls == error_class::kPckCertChainExpired || cls == error_class::kSigningCertChainExpired;
}

}  // namespace

absl::Status MakeError(absl::StatusCode code, absl::string_view cls, absl::string_view detail) {
  return absl::Status(code, absl::StrCat(cls, ": ", detail));
}

std::string ErrorClass(const absl::Status& status) {
  if (status.ok()) return "";
  const absl::string_view msg = status.message();
  const size_t colon = msg.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  const absl::string_view prefix = msg.substr(0, colon);
  for (char c : prefix) {
    if (!(absl::ascii_isupper(static_cast<unsigned char>(c)) ||
          absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return "";
    }
  }
  return std::string(prefix);
}

bool MatchesErrorClass(const absl::Status& status, absl::string_view expected) {
  const std::string cls = ErrorClass(status);
  if (cls.empty()) return false;
  if (cls == expected) return true;
  return expected == error_class::kCollateralExpired && IsExpiryClass(cls);
}

bool IsCollateralTimeError(const absl::Status& status) {
  const std::string cls = ErrorClass(status);
  return IsExpiryClass(cls) || cls == error_class::kCollateralNotYetValid;
}

}  // namespace pml::tdx
