#pragma once
// Status propagation helpers. Abseil 20220623 (Debian 12) has no status_macros.h, so the project
// keeps its own small set here. Every fallible function in lib/ returns absl::Status or
// absl::StatusOr<T>; these macros propagate without losing the code.

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define PML_INTERNAL_CONCAT_IMPL(a, b) a##b
#define PML_INTERNAL_CONCAT(a, b) PML_INTERNAL_CONCAT_IMPL(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define PML_RETURN_IF_ERROR(expr)                \
  do {                                           \
    ::absl::Status pml_status_ = (expr);         \
    if (!pml_status_.ok()) return pml_status_;   \
  } while (0)

// `PML_ASSIGN_OR_RETURN(T x, StatusOrExpr);` declares/assigns `x` from the value or returns
// the error. `lhs` may be a declaration or an existing lvalue.
#define PML_ASSIGN_OR_RETURN(lhs, rexpr) \
  PML_INTERNAL_ASSIGN_OR_RETURN(PML_INTERNAL_CONCAT(pml_statusor_, __LINE__), lhs, rexpr)
#define PML_INTERNAL_ASSIGN_OR_RETURN(var, lhs, rexpr) \
  auto var = (rexpr);                                  \
  if (!var.ok()) return std::move(var).status();       \
  lhs = std::move(var).value()

// A broken internal invariant (never input validation): always on, also under NDEBUG.
#define PML_CHECK(cond)                                                                   \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "PML_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace pml::core {

// Returns `status` with `context` prepended to its message ("context: message"), same code.
// An OK status is returned unchanged.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace pml::core
