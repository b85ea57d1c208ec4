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

// Nix counts (2.32+: only while enabled) for the lifetime of the scope, then restores the
// previous setting.
class CountersOn
{
    bool previous;
public:
    CountersOn() : previous(compat::enableCounters(true)) {}
    ~CountersOn() { compat::enableCounters(previous); }
    CountersOn(const CountersOn &) = delete;
    CountersOn & operator=(const CountersOn &) = delete;
};

} // namespace evalcost
