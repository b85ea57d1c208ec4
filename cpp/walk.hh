#pragma once
#include "state.hh"

namespace evalcost {

struct WalkRequest;
struct FlakeFacts;

// What a locked flake is, for the report (`original`: the reference as given).
FlakeFacts describeFlake(const nix::flake::LockedFlake & locked, const std::string & original);

// Lock the flake, evaluate its outputs and walk them, reporting every node to Rust.
// Phases are announced to Rust as they start. Nix errors inside one node are recorded on that
// node; errors while loading the flake and nix::Interrupted propagate.
void walkFlake(nix::EvalState & state, const WalkRequest & request);

} // namespace evalcost
