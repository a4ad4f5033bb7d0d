#include "lib/rpc/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace pml::rpc {
namespace {

void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

// "%*" in the JSON pattern: the message split into event and key=value fields.
class JsonFieldsFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string body =
        MessageToJsonFields(absl::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(body.data(), body.data() + body.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonFieldsFlag>();
  }
};

}  // namespace

std::string MessageToJsonFields(absl::string_view message) {
  std::string out;
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < message.size() && message[i] == ' ') ++i;
  };
  skip_spaces();
  size_t start = i;
  while (i < message.size() && message[i] != ' ') ++i;
  out += "\"event\":";
  AppendJsonString(out, message.substr(start, i - start));
  bool ok = true;
  std::string fields;
  while (ok) {
    skip_spaces();
    if (i >= message.size()) break;
    const size_t key_start = i;
    while (i < message.size() && message[i] != '=' && message[i] != ' ') ++i;
    if (i >= message.size() || message[i] != '=' || i == key_start) {
      ok = false;
      break;
    }
    const absl::string_view key = message.substr(key_start, i - key_start);
    ++i;  // '='
    std::string value;
    if (i < message.size() && message[i] == '"') {
      // A {:?}-formatted string: read to the closing unescaped quote, keeping escapes decoded
      // only for \" and \\.
      ++i;
      bool closed = false;
      while (i < message.size()) {
        char c = message[i++];
        if (c == '\\' && i < message.size()) {
          value.push_back(message[i++]);
          continue;
        }
        if (c == '"') {
          closed = true;
          break;
        }
        value.push_back(c);
      }
      if (!closed) {
        ok = false;
        break;
      }
    } else {
      const size_t v = i;
      while (i < message.size() && message[i] != ' ') ++i;
      value = std::string(message.substr(v, i - v));
    }
    absl::StrAppend(&fields, ",");
    AppendJsonString(fields, key);
    fields += ":";
    AppendJsonString(fields, value);
  }
  if (ok) {
    out += fields;
  } else {
    out += ",\"msg\":";
    AppendJsonString(out, message);
  }
  return out;
}

absl::Status SetupLogging(const LogConfig& config, absl::string_view component) {
  const auto level = spdlog::level::from_str(config.level);
  if (level == spdlog::level::off && config.level != "off") {
    return absl::InvalidArgumentError(absl::StrCat("--log-level: unknown level ", config.level));
  }
  auto logger = std::make_shared<spdlog::logger>(
      std::string(component), std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (config.format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonFieldsFlag>('*');
    formatter->set_pattern(
        absl::StrCat(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":")", component,
                     R"(",%*})"));
    logger->set_formatter(std::move(formatter));
  } else if (config.format == "text") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %L %n %v");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-format: want text or json, got ", config.format));
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(level);
  return absl::OkStatus();
}

}  // namespace pml::rpc
