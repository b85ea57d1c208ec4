#pragma once
#include "state.hh"
#include "rust/cxx.h"

namespace evalcost {

// The evaluator passive profiling measures (null when none): counters are read from it when no
// builtin has published one (state.hh).
nix::EvalState * currentPassiveState() noexcept;

// Registers the `evalcost-*` settings with Nix (from nix_plugin_entry, before Nix applies
// nix.conf's settings that were unknown until plugins were loaded).
void register_passive_settings();
// Redirects the evaluator's construction and end to passive profiling; an empty string, or why
// it cannot.
rust::String install_passive_hooks() noexcept;

} // namespace evalcost
