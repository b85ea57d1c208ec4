#pragma once
#include "state.hh"

namespace evalcost {

// While alive, turns on `trace-function-calls` and routes its messages to Rust (the call-stack
// profile) instead of stderr; everything else Nix logs passes through untouched. Restores the
// previous logger and setting when it goes out of scope, exceptions included.
class StackProfiling
{
    struct Impl;
    std::unique_ptr<Impl> impl;
public:
    explicit StackProfiling(nix::EvalState & state);
    ~StackProfiling();
};

} // namespace evalcost
