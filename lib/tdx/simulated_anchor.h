#pragma once
// The simulated TEE's root public key, as a trust anchor the verifier side can pin without
// linking the simulator (STYLE.md §1: lib/tdx never links lib/tee). lib/tee derives the same key
// (lib/tee/simulated_root.pem); lib/tee's round-trip test checks the two never drift apart.
// Pin it only when an operator asked for it explicitly (--trust-simulated-tee): anyone can sign
// with it, so every result verified through it says simulated.

#include "absl/strings/string_view.h"

namespace pml::tdx {

inline constexpr absl::string_view kSimulatedTdxRootPublicKeyPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2J8q/7I5e6kTGByjimlJJjeYQ7S+\n"
    "OxpvlxmVUUX4GvJ9eCtv/+Iv/6tHnWHhpXW2eVydmzmYktE2SphLIKY+NQ==\n"
    "-----END PUBLIC KEY-----\n";

inline constexpr absl::string_view kSimulatedTdxRootName = "PML SIMULATED TDX root";

}  // namespace pml::tdx
