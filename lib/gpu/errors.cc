#include "lib/gpu/errors.h"

#include "absl/strings/str_cat.h"

namespace pml::gpu {

absl::Status MakeError(absl::StatusCode code, absl::string_view cls, absl::string_view detail) {
  return absl::Status(code, absl::StrCat(cls, ": ", detail));
}

std::string ErrorClass(const absl::Status& status) {
  if (status.ok())
    return "";
  absl::string_view msg = status.message();
  const size_t colon = msg.find(": ");
  if (colon == absl::string_view::npos || colon == 0)
    return "";
  for (char c : msg.substr(0, colon)) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return "";
  }
  return std::string(msg.substr(0, colon));
}

absl::Status WithClass(const absl::Status& status, absl::string_view cls) {
  if (status.ok() || !ErrorClass(status).empty())
    return status;
  return MakeError(status.code(), cls, status.message());
}

}  // namespace pml::gpu
