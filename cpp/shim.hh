// shim.hh: the C++ side of the cxx bridge (src/bridge.rs). Only sensors live in C++:
// reading Nix's counters, forcing values, walking attribute sets, catching Nix errors.
// Accounting, walk policy and the report are Rust's.
#pragma once
#include "rust/cxx.h"
#include <cstdint>

namespace evalcost {

struct RawCounters;
struct NixSizes;

// counters.cc: where Nix's counters are read.
RawCounters read_counters() noexcept;
RawCounters read_call_counters() noexcept;
NixSizes nix_sizes() noexcept;
rust::String nix_version() noexcept;

// primops.cc: registers builtins.evalcostWalk and builtins.evalcostMeasure.
void register_primops();

// stacks.cc: how call stacks are sensed in this build ("trace-function-calls", "eval-profiler").
rust::Str stack_source() noexcept;

} // namespace evalcost
