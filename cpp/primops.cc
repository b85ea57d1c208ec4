// primops.cc: the Nix-language entry points of the plugin (plugins cannot add `nix` subcommands).
//
//   builtins.evalcostWalk { flake; baseDir ? cwd; report; systems ? [ currentSystem ] | "all";
//                           forceDrvPaths ? true; stacks ? false; stacksNodes ? 0; argv ? [ ];
//                           shard ? "" (I/N: this shard's part of the outputs only);
//                           claims ? "" (a parallel walk's claims file); workerRun ? 0; maxRss ? 0;
//                           soleWorker ? false (-j 1: write the joined report);
//                           only ? [ ] (an attribute path: walk that output alone);
//                           summary ? "" (the table to render when the report is written); }
//   builtins.evalcostMeasure label value
//
// Documented in docs/plugin.md. Errors from the Rust core (rust::Error) are turned into
// nix::Error so that Nix prints them like any evaluation error instead of terminating.
#include "shim.hh"
#include "stacks.hh"
#include "walk.hh"
#include "nix-evalcost/src/bridge.rs.h"

#include <unistd.h>

namespace evalcost {

namespace {

nix::Value * optionalAttr(nix::EvalState & state, nix::Value & args, const char * name)
{
    auto * attr = args.attrs()->get(state.symbols.create(name));
    return attr ? attr->value : nullptr;
}

std::string requiredString(nix::EvalState & state, nix::Value & args, const char * name, nix::PosIdx pos)
{
    auto * v = optionalAttr(state, args, name);
    if (!v) throw nix::Error("builtins.evalcostWalk: the attribute '%s' is required", name);
    return std::string(state.forceStringNoCtx(*v, pos, "while evaluating an argument of builtins.evalcostWalk"));
}

rust::Vec<rust::String> stringList(nix::EvalState & state, nix::Value & list, nix::PosIdx pos)
{
    rust::Vec<rust::String> out;
    state.forceList(list, pos, "while evaluating a list argument of builtins.evalcostWalk");
    compat::forEachListItem(list, [&](nix::Value & item) {
        out.push_back(rust::String(std::string(
            state.forceStringNoCtx(item, pos, "while evaluating a list argument of builtins.evalcostWalk"))));
    });
    return out;
}

bool optionalBool(nix::EvalState & state, nix::Value & args, const char * name, bool fallback, nix::PosIdx pos)
{
    auto * v = optionalAttr(state, args, name);
    return v ? state.forceBool(*v, pos, std::string("while evaluating ") + name) : fallback;
}

// An integer argument within [min, max]; 0 when absent.
int64_t optionalInt(nix::EvalState & state, nix::Value & args, const char * name, int64_t min, int64_t max, nix::PosIdx pos)
{
    auto * v = optionalAttr(state, args, name);
    if (!v) return 0;
    int64_t n = state.forceInt(*v, pos, std::string("while evaluating ") + name).value;
    if (n < min || n > max) {
        if (min == 0 && max == INT64_MAX) throw nix::Error("builtins.evalcostWalk: %s must not be negative", name);
        throw nix::Error("builtins.evalcostWalk: %s must be between %d and %d", name, min, max);
    }
    return n;
}

std::string currentDirectory()
{
    char buf[4096];
    return getcwd(buf, sizeof buf) ? std::string(buf) : std::string("/");
}

WalkRequest readWalkRequest(nix::EvalState & state, nix::Value & args, nix::PosIdx pos)
{
    state.forceAttrs(args, pos, "while evaluating the argument of builtins.evalcostWalk");
    WalkRequest r{};
    r.flake = requiredString(state, args, "flake", pos);
    r.report = requiredString(state, args, "report", pos);
    r.base_dir = optionalAttr(state, args, "baseDir") ? requiredString(state, args, "baseDir", pos) : currentDirectory();
    r.force_drv_paths = optionalBool(state, args, "forceDrvPaths", true, pos);
    r.all_systems = false;
    if (auto * v = optionalAttr(state, args, "systems")) {
        state.forceValue(*v, pos);
        if (v->type() == nix::nString && v->string_view() == "all")
            r.all_systems = true;
        else
            r.systems = stringList(state, *v, pos);
    } else {
        r.systems.push_back(rust::String(nix::settings.thisSystem.get()));
    }
    if (auto * v = optionalAttr(state, args, "argv")) r.argv = stringList(state, *v, pos);
    if (optionalAttr(state, args, "shard")) r.shard = requiredString(state, args, "shard", pos);
    if (auto * v = optionalAttr(state, args, "only")) r.only = stringList(state, *v, pos);
    if (optionalAttr(state, args, "summary")) r.summary = requiredString(state, args, "summary", pos);
    if (optionalAttr(state, args, "claims")) r.claims = requiredString(state, args, "claims", pos);
    r.worker_run = uint32_t(optionalInt(state, args, "workerRun", 1, 1000000, pos));
    r.sole_worker = optionalBool(state, args, "soleWorker", false, pos);
    r.max_rss = uint64_t(optionalInt(state, args, "maxRss", 0, INT64_MAX, pos));
    r.stacks = optionalBool(state, args, "stacks", false, pos);
    r.stacks_nodes = uint64_t(optionalInt(state, args, "stacksNodes", 0, INT64_MAX, pos));
    return r;
}

// The result of builtins.evalcostWalk, allocated before the report's final reading (allocating
// it afterwards would put 4 values and a set outside the totals); filled in after it.
struct WalkResult
{
    nix::Value *nodes, *errors, *interrupted;

    WalkResult(nix::EvalState & state, const std::string & report, nix::Value & v)
    {
        auto attrs = state.buildBindings(4);
        compat::mkString(state, attrs.alloc("report"), report);
        nodes = &attrs.alloc("nodes");
        errors = &attrs.alloc("errors");
        interrupted = &attrs.alloc("interrupted");
        v.mkAttrs(attrs);
    }

    void fill(const WalkSummary & summary)
    {
        nodes->mkInt(int64_t(summary.nodes));
        errors->mkInt(int64_t(summary.errors));
        interrupted->mkBool(summary.interrupted);
    }
};

void primWalk(nix::EvalState & state, const nix::PosIdx pos, nix::Value ** args, nix::Value & v)
{
    if (!plugin_enabled())
        throw nix::Error("nix-evalcost is disabled (NIX_EVALCOST=0): builtins.evalcostWalk measures nothing");
    ActiveState active(state);
    CountersOn counting;
    try {
        auto request = readWalkRequest(state, *args[0], pos);
        walk_begin(WalkRequest(request)); // Rust keeps its own copy
        WalkResult result(state, std::string(request.report), v);
        try {
            std::optional<StackProfiling> stacks;
            if (request.stacks) stacks.emplace(state);
            walkFlake(state, request);
        } catch (nix::Interrupted &) {
            walk_finish(/*interrupted=*/true); // Ctrl-C: a valid partial report, then stop as Nix does.
            throw;
        } catch (...) {
            walk_abandon(); // the flake could not be loaded: no report rather than a misleading one
            throw;
        }
        result.fill(walk_finish(/*interrupted=*/false));
    } catch (rust::Error & e) {
        throw nix::Error("nix-evalcost: %s", e.what());
    }
}

void primMeasure(nix::EvalState & state, const nix::PosIdx pos, nix::Value ** args, nix::Value & v)
{
    if (!plugin_enabled()) {
        state.forceValue(*args[1], pos);
        v = *args[1];
        return;
    }
    std::string label(state.forceStringNoCtx(*args[0], pos, "while evaluating the label of builtins.evalcostMeasure"));
    ActiveState active(state);
    CountersOn counting;
    try {
        uint32_t node = measure_enter(label);
        try {
            state.forceValue(*args[1], pos);
        } catch (nix::Interrupted &) {
            throw;
        } catch (nix::BaseError & e) {
            measure_exit(node, e.info().msg.str());
            throw; // measuring must not change what the expression does
        }
        measure_exit(node, "");
    } catch (rust::Error & e) {
        throw nix::Error("nix-evalcost: %s", e.what());
    }
    v = *args[1];
}

} // namespace

void register_primops()
{
    nix::RegisterPrimOp{compat::makePrimOp("__evalcostWalk", {"args"}, R"(
          Lock a flake, walk its outputs like `nix flake show` and write a JSON report of what
          evaluating each output cost. Used by `nix-evalcost profile`; see docs/plugin.md.
        )", primWalk)};
    nix::RegisterPrimOp{compat::makePrimOp("__evalcostMeasure", {"label", "value"}, R"(
          Return `value`, forced to weak head normal form, and charge what forcing it cost to
          `label` in the nix-evalcost report. See docs/plugin.md.
        )", primMeasure)};
}

} // namespace evalcost
