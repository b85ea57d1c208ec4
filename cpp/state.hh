// state.hh: the EvalState the plugin is currently measuring.
//
// Counters are members of EvalState, and Rust reads them through read_counters() without a
// handle, so every primop publishes its EvalState here for the duration of the call.
#pragma once
#include "compat.hh"

namespace evalcost {

nix::EvalState * currentState() noexcept;

// Publishes `state` for the lifetime of the scope; restores the previous one (primops nest).
class ActiveState
{
    nix::EvalState * previous;
public:
    explicit ActiveState(nix::EvalState & state);
    ~ActiveState();
    ActiveState(const ActiveState &) = delete;
    ActiveState & operator=(const ActiveState &) = delete;
};

} // namespace evalcost
