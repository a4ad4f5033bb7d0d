#include "tools/pmlctl/cli_util.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"

namespace pml::pmlctl {
namespace {

constexpr size_t kAppIdBytes = 20;

}  // namespace

int PrintError(absl::string_view command, int exit_code, const absl::Status& status) {
  std::cout.flush();
  std::cerr << "pmlctl " << command << ": error: " << status.ToString() << "\n";
  return exit_code;
}

absl::Status FollowPages(
    int max_pages, absl::string_view first_token,
    absl::FunctionRef<absl::StatusOr<std::string>(const std::string& page_token)> fetch_page) {
  std::set<std::string> tokens_seen;
  std::string token(first_token);
  for (int page = 0; page < max_pages; ++page) {
    PML_ASSIGN_OR_RETURN(token, fetch_page(token));
    if (token.empty()) {
      return absl::OkStatus();
    }
    if (!tokens_seen.insert(token).second) {
      return absl::InternalError("the service returned the same page token twice");
    }
  }
  return absl::InternalError(absl::StrCat("more than ", max_pages, " pages"));
}

absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path, size_t max_bytes) {
  if (path != "-") {
    return core::ReadFile(path, max_bytes);
  }
  std::string text;
  char buf[4096];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    text.append(buf, static_cast<size_t>(std::cin.gcount()));
    if (text.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("standard input holds more than ", max_bytes, " bytes"));
    }
  }
  return text;
}

absl::StatusOr<std::string> ParseAppIdFlag(absl::string_view flag, absl::string_view text) {
  const std::string shown(text.substr(0, 64));
  auto bytes = core::HexDecode(text);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", shown, "\": not hex (", bytes.status().message(), ")"));
  }
  if (bytes->size() != kAppIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " \"", shown, "\": want 40 hex digits (",
                                                   kAppIdBytes, " bytes), got ",
                                                   bytes->size() * 2));
  }
  return core::ToString(*bytes);
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        absl::string_view indent) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    absl::StripTrailingAsciiWhitespace(&line);
    out += line + "\n";
  }
  return out;
}

std::string Hex(absl::string_view bytes) { return core::HexEncode(bytes); }

std::string HexOrDash(absl::string_view bytes) { return bytes.empty() ? "-" : Hex(bytes); }

std::string OrDash(absl::string_view text) { return text.empty() ? "-" : std::string(text); }

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) {
    return "-";
  }
  const absl::Time t = absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

}  // namespace pml::pmlctl
