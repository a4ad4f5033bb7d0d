#pragma once
// Internal to lib/tdx: a small strict JSON (RFC 8259) parser into a flat node array, for the
// signed collateral bodies (TCB info, QE identity). nlohmann::json needs ~80 us for a 3 KB TCB
// info (its lexer and per-key map nodes), which is a tenth of a cold verification; this parser
// needs a few microseconds and allocates only for the node array and escaped strings. The rest
// of lib/tdx (collateral.json, bundles, event logs) uses nlohmann::json.
//
// Rejected: trailing bytes, nesting deeper than kMaxDepth, duplicate object keys, control
// characters in strings, malformed escapes/numbers, more than `max_nodes` values.
// Thread-safety: a parsed JsonDoc is immutable.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::tdx::internal {

class JsonDoc {
 public:
  enum class Type : uint8_t { kNull, kBool, kInteger, kNumber, kString, kArray, kObject };

  struct Node {
    Type type = Type::kNull;
    bool boolean = false;
    int64_t integer = 0;        // kInteger: the value (integers that do not fit are kNumber)
    absl::string_view text;     // kString: the decoded value; kNumber: the literal
    absl::string_view key;      // for members of an object: the decoded key
    uint32_t first_child = 0;   // kArray/kObject: index of the first child (0 = none)
    uint32_t size = 0;          // kArray/kObject: number of children
    uint32_t next_sibling = 0;  // index of the next member/element (0 = none)
  };

  static constexpr int kMaxDepth = 64;

  // Parses `text`. kInvalidArgument with the offset of the problem. `text` must outlive the
  // document (unescaped strings point into it).
  static absl::StatusOr<JsonDoc> Parse(absl::string_view text, size_t max_nodes = 1 << 20);

  JsonDoc(JsonDoc&&) = default;
  JsonDoc& operator=(JsonDoc&&) = default;

  const Node& node(uint32_t i) const { return nodes_[i]; }
  static constexpr uint32_t kRoot = 0;
  // The member of object node `obj` named `key`, or -1.
  int64_t Find(uint32_t obj, absl::string_view key) const;

 private:
  JsonDoc() = default;
  std::vector<Node> nodes_;
  // Decoded strings that contained escapes; Node::text points into these (stable: deque-like
  // storage of separately allocated strings).
  std::vector<std::unique_ptr<std::string>> decoded_;

  friend class JsonParser;
};

}  // namespace pml::tdx::internal
