#pragma once
// A pre-check on JSON text before it is parsed. nlohmann::json parses without recursion, but its
// destructor, dump() and code walking the result recurse once per nesting level, so input from
// outside (JWTs, image metadata) is refused above a small depth before it is parsed.

#include "absl/strings/string_view.h"

namespace pml::core {

// True when no object or array in `text` nests deeper than `max_depth` levels ("{}" and "[]" are
// depth 1). Brackets inside strings (with their backslash escapes) do not count. It only counts:
// malformed JSON (unbalanced or stray brackets) is the parser's to refuse, and may return true.
// Linear in text.size(), no allocation. Pure and thread-safe.
bool JsonDepthWithin(absl::string_view text, int max_depth);

}  // namespace pml::core
