// counters.cc: where Nix's counters are read (the plugin's only sensor of evaluation work).
#include "state.hh"
#include "nix-evalcost/src/bridge.rs.h"

namespace evalcost {

static nix::EvalState * activeState = nullptr;

nix::EvalState * currentState() noexcept { return activeState; }
ActiveState::ActiveState(nix::EvalState & state) : previous(activeState) { activeState = &state; }
ActiveState::~ActiveState() { activeState = previous; }

RawCounters read_counters() noexcept
{
    RawCounters c{};
    c.thunks = compat::thunkCount();
    c.gc_total_bytes = GC_get_total_bytes();
    c.gc_heap_bytes = GC_get_heap_size();
    c.gc_cycles = nix::getGCCycles();
    auto * s = activeState;
    if (!s) return c;
    c.function_calls = EVALCOST_COUNTER(*s, nrFunctionCalls);
    c.primop_calls = EVALCOST_COUNTER(*s, nrPrimOpCalls);
    c.lookups = EVALCOST_COUNTER(*s, nrLookups);
    c.values = EVALCOST_COUNTER(*s, nrValues);
    c.envs = EVALCOST_COUNTER(*s, nrEnvs);
    c.values_in_envs = EVALCOST_COUNTER(*s, nrValuesInEnvs);
    c.list_elems = EVALCOST_COUNTER(*s, nrListElems);
    c.list_concats = EVALCOST_COUNTER(*s, nrListConcats);
    c.attrsets = EVALCOST_COUNTER(*s, nrAttrsets);
    c.attrs_in_attrsets = EVALCOST_COUNTER(*s, nrAttrsInAttrsets);
    c.op_updates = EVALCOST_COUNTER(*s, nrOpUpdates);
    c.op_update_values_copied = EVALCOST_COUNTER(*s, nrOpUpdateValuesCopied);
    c.avoided = EVALCOST_COUNTER(*s, nrAvoided);
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
