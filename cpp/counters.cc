// counters.cc: where Nix's counters are read (the plugin's only sensor of evaluation work).
#include "state.hh"
#include "passive.hh"
#include "nix-evalcost/src/bridge.rs.h"

namespace evalcost {

static nix::EvalState * activeState = nullptr;

// A builtin's evaluator while it runs, else the one passive profiling measures.
nix::EvalState * currentState() noexcept { return activeState ? activeState : currentPassiveState(); }
ActiveState::ActiveState(nix::EvalState & state) : previous(activeState) { activeState = &state; }
ActiveState::~ActiveState() { activeState = previous; }

RawCounters read_counters() noexcept
{
    RawCounters c = read_call_counters();
    c.gc_heap_bytes = GC_get_heap_size(); // a gauge: nodes need it, call frames do not
    c.gc_cycles = nix::getGCCycles();
    auto * s = currentState();
    if (!s) return c;
    c.list_concats = compat::stateCounter<compat::Tag_nrListConcats>(*s);
    c.op_updates = compat::stateCounter<compat::Tag_nrOpUpdates>(*s);
    c.op_update_values_copied = compat::stateCounter<compat::Tag_nrOpUpdateValuesCopied>(*s);
    c.avoided = compat::stateCounter<compat::Tag_nrAvoided>(*s);
    return c;
}

// What a call frame keeps (the core's `CallCost`), and nothing else: this runs at every call
// and return while stacks are profiled. The rest, and the GC heap size (whose read takes the
// allocator lock), only nodes read.
RawCounters read_call_counters() noexcept
{
    RawCounters c{};
    c.thunks = compat::thunkCount();
    c.gc_total_bytes = GC_get_total_bytes();
    auto * s = currentState();
    if (!s) return c;
    c.function_calls = compat::stateCounter<compat::Tag_nrFunctionCalls>(*s);
    c.primop_calls = compat::stateCounter<compat::Tag_nrPrimOpCalls>(*s);
    c.lookups = compat::stateCounter<compat::Tag_nrLookups>(*s);
    c.values = compat::values(*s);
    c.envs = compat::envs(*s);
    c.values_in_envs = compat::valuesInEnvs(*s);
    c.list_elems = compat::listElems(*s);
    c.attrsets = compat::attrsets(*s);
    c.attrs_in_attrsets = compat::attrsInAttrsets(*s);
    return c;
}

// The sizes printStatistics() multiplies the counts by, so our bytes match NIX_SHOW_STATS.
NixSizes nix_sizes() noexcept
{
    return NixSizes{
        .value = sizeof(nix::Value),
        .env = sizeof(nix::Env),
        .bindings = sizeof(nix::Bindings),
        .attr = sizeof(nix::Attr),
        .pointer = sizeof(nix::Value *),
    };
}

rust::String nix_version() noexcept
{
    return rust::String(compat::nixVersion());
}

} // namespace evalcost
