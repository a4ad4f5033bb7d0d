#include "lib/tdx/internal/flat_json.h"

#include <memory>
#include <string>
#include <utility>

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"

namespace pml::tdx::internal {

class JsonParser {
 public:
  JsonParser(absl::string_view s, JsonDoc* doc, size_t max_nodes)
      : s_(s), doc_(doc), max_nodes_(max_nodes) {}

  absl::Status ParseDocument() {
    SkipWs();
    PML_ASSIGN_OR_RETURN(uint32_t root, NewNode());
    PML_RETURN_IF_ERROR(ParseValue(root, 0));
    SkipWs();
    if (pos_ != s_.size()) return Err("trailing bytes after the json value");
    return absl::OkStatus();
  }

 private:
  using Node = JsonDoc::Node;
  using Type = JsonDoc::Type;

  absl::Status Err(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("json: ", what, " at offset ", pos_));
  }

  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::StatusOr<uint32_t> NewNode() {
    if (doc_->nodes_.size() >= max_nodes_) return Err("too many values");
    doc_->nodes_.emplace_back();
    return static_cast<uint32_t>(doc_->nodes_.size() - 1);
  }

  Node& N(uint32_t i) { return doc_->nodes_[i]; }

  absl::Status ParseValue(uint32_t idx, int depth) {
    if (pos_ >= s_.size()) return Err("unexpected end");
    const char c = s_[pos_];
    switch (c) {
      case '{':
      case '[':
        if (depth >= JsonDoc::kMaxDepth) return Err("nesting too deep");
        return c == '{' ? ParseObject(idx, depth) : ParseArray(idx, depth);
      case '"': {
        N(idx).type = Type::kString;
        PML_ASSIGN_OR_RETURN(absl::string_view text, ParseString());
        N(idx).text = text;
        return absl::OkStatus();
      }
      case 't':
        return Literal(idx, "true", Type::kBool, true);
      case 'f':
        return Literal(idx, "false", Type::kBool, false);
      case 'n':
        return Literal(idx, "null", Type::kNull, false);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(idx);
        return Err("unexpected character");
    }
  }

  absl::Status Literal(uint32_t idx, absl::string_view word, Type type, bool value) {
    if (s_.substr(pos_, word.size()) != word) return Err("bad literal");
    pos_ += word.size();
    N(idx).type = type;
    N(idx).boolean = value;
    return absl::OkStatus();
  }

  absl::Status ParseObject(uint32_t idx, int depth) {
    N(idx).type = Type::kObject;
    ++pos_;  // '{'
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    uint32_t prev = 0;
    std::vector<absl::string_view> small_keys;
    absl::flat_hash_set<absl::string_view> many_keys;
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Err("expected a member name");
      PML_ASSIGN_OR_RETURN(absl::string_view key, ParseString());
      // Duplicate names make a document mean different things to different parsers.
      if (small_keys.size() < 32) {
        for (absl::string_view k : small_keys) {
          if (k == key) return Err("duplicate member name");
        }
        small_keys.push_back(key);
        if (small_keys.size() == 32) many_keys.insert(small_keys.begin(), small_keys.end());
      } else if (!many_keys.insert(key).second) {
        return Err("duplicate member name");
      }
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Err("expected ':'");
      ++pos_;
      SkipWs();
      PML_ASSIGN_OR_RETURN(uint32_t child, NewNode());
      N(child).key = key;
      if (prev == 0) {
        N(idx).first_child = child;
      } else {
        N(prev).next_sibling = child;
      }
      prev = child;
      ++N(idx).size;
      PML_RETURN_IF_ERROR(ParseValue(child, depth + 1));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      return Err("expected ',' or '}'");
    }
  }

  absl::Status ParseArray(uint32_t idx, int depth) {
    N(idx).type = Type::kArray;
    ++pos_;  // '['
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    uint32_t prev = 0;
    while (true) {
      SkipWs();
      PML_ASSIGN_OR_RETURN(uint32_t child, NewNode());
      if (prev == 0) {
        N(idx).first_child = child;
      } else {
        N(prev).next_sibling = child;
      }
      prev = child;
      ++N(idx).size;
      PML_RETURN_IF_ERROR(ParseValue(child, depth + 1));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      return Err("expected ',' or ']'");
    }
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (pos_ + 4 > s_.size()) return Err("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const int d = HexDigit(s_[pos_++]);
      if (d < 0) return Err("bad \\u escape");
      v = v << 4 | static_cast<uint32_t>(d);
    }
    return v;
  }

  static void AppendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | cp >> 6));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | cp >> 12));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | cp >> 18));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  // At a '"'. Returns the decoded contents (a view into the input when there is no escape).
  absl::StatusOr<absl::string_view> ParseString() {
    const size_t start = ++pos_;
    while (pos_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        return s_.substr(start, pos_++ - start);
      }
      if (c == '\\') break;
      if (c < 0x20) return Err("control character in string");
      ++pos_;
    }
    if (pos_ >= s_.size()) return Err("unterminated string");
    // Slow path: decode escapes.
    auto out = std::make_unique<std::string>(s_.substr(start, pos_ - start));
    while (pos_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        doc_->decoded_.push_back(std::move(out));
        return absl::string_view(*doc_->decoded_.back());
      }
      if (c < 0x20) return Err("control character in string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      if (++pos_ >= s_.size()) return Err("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          PML_ASSIGN_OR_RETURN(uint32_t cp, Hex4());
          if (cp >= 0xdc00 && cp <= 0xdfff) return Err("lone low surrogate");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (s_.substr(pos_, 2) != "\\u") return Err("lone high surrogate");
            pos_ += 2;
            PML_ASSIGN_OR_RETURN(uint32_t lo, Hex4());
            if (lo < 0xdc00 || lo > 0xdfff) return Err("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          AppendUtf8(*out, cp);
          break;
        }
        default:
          return Err("bad escape");
      }
    }
    return Err("unterminated string");
  }

  absl::Status ParseNumber(uint32_t idx) {
    const size_t start = pos_;
    bool negative = false;
    if (s_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    auto digit = [&](size_t p) { return p < s_.size() && s_[p] >= '0' && s_[p] <= '9'; };
    if (!digit(pos_)) return Err("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit(pos_)) return Err("leading zero in number");
    } else {
      while (digit(pos_)) ++pos_;
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (!digit(pos_)) return Err("bad fraction");
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit(pos_)) return Err("bad exponent");
      while (digit(pos_)) ++pos_;
    }
    const absl::string_view literal = s_.substr(start, pos_ - start);
    N(idx).text = literal;
    N(idx).type = Type::kNumber;
    if (integral) {
      // Accumulate as a negative value so INT64_MIN fits; overflow leaves it a kNumber.
      int64_t v = 0;
      bool overflow = false;
      for (size_t i = negative ? 1 : 0; i < literal.size(); ++i) {
        const int d = literal[i] - '0';
        if (v < (INT64_MIN + d) / 10) {
          overflow = true;
          break;
        }
        v = v * 10 - d;
      }
      if (!overflow && (negative || v != INT64_MIN)) {
        N(idx).type = Type::kInteger;
        N(idx).integer = negative ? v : -v;
      }
    }
    return absl::OkStatus();
  }

  absl::string_view s_;
  JsonDoc* doc_;
  size_t max_nodes_;
  size_t pos_ = 0;
};

absl::StatusOr<JsonDoc> JsonDoc::Parse(absl::string_view text, size_t max_nodes) {
  JsonDoc doc;
  doc.nodes_.reserve(std::min<size_t>({text.size() / 4 + 1, max_nodes, 4096}));
  JsonParser parser(text, &doc, max_nodes);
  PML_RETURN_IF_ERROR(parser.ParseDocument());
  return doc;
}

int64_t JsonDoc::Find(uint32_t obj, absl::string_view key) const {
  const Node& o = nodes_[obj];
  if (o.type != Type::kObject) return -1;
  for (uint32_t c = o.first_child; c != 0; c = nodes_[c].next_sibling) {
    if (nodes_[c].key == key) return c;
  }
  return -1;
}

}  // namespace pml::tdx::internal
