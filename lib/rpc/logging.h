#pragma once
// Logging setup (spdlog): human-readable lines by default, JSON lines with --log-format=json.
// Log lines are "event key=value ..." (STYLE.md §8); in JSON mode the event and each key=value
// become JSON fields. Never log secrets: lib/crypto's SecretBytes has no formatter.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::rpc {

struct LogConfig {
  std::string format = "text";  // "text" | "json"
  std::string level = "info";   // "debug" | "info" | "warn" | "error"
};

// Installs the default logger on stderr. kInvalidArgument for an unknown format or level.
absl::Status SetupLogging(const LogConfig& config, absl::string_view component);

// Renders one "event k=v k2=\"quoted v\"" message as a JSON object body (without braces) of
// "event":"...","k":"v",... Exposed for tests.
std::string MessageToJsonFields(absl::string_view message);

}  // namespace pml::rpc
