// walk.cc: where the flake's outputs are walked.
//
// Which children to visit is decided by Rust (crates/core/src/walk_policy.rs); this file only forces values,
// classifies them and catches Nix errors so that one failing output does not stop the walk.
#include "walk.hh"
#include "nix-evalcost/src/bridge.rs.h"

namespace evalcost {

namespace {

// The parent of the flake's top-level outputs (declared once, in the bridge).
constexpr uint32_t ROOT = static_cast<uint32_t>(NodeId::Root);
// A unit another worker of a parallel walk has taken.
constexpr uint32_t SKIP = static_cast<uint32_t>(NodeId::Skip);

NodeKind kindOf(const nix::Value & v)
{
    switch (v.type()) {
    case nix::nInt:
    case nix::nFloat: return NodeKind::Number;
    case nix::nBool: return NodeKind::Bool;
    case nix::nString: return NodeKind::String;
    case nix::nPath: return NodeKind::Path;
    case nix::nNull: return NodeKind::Null;
    case nix::nAttrs: return NodeKind::Attrset;
    case nix::nList: return NodeKind::List;
    case nix::nFunction: return NodeKind::Function;
    case nix::nExternal: return NodeKind::External;
    default: return NodeKind::Unknown;
    }
}

// The error text without Nix's "error:" prefix or trace; ANSI escapes are stripped in Rust.
std::string messageOf(const nix::BaseError & e) { return e.info().msg.str(); }

class Walker
{
    nix::EvalState & state;
    const bool forceDrvPaths;

public:
    Walker(nix::EvalState & state, bool forceDrvPaths) : state(state), forceDrvPaths(forceDrvPaths) {}

    void walkChildren(nix::Value & attrs, uint32_t node)
    {
        auto sorted = attrs.attrs()->lexicographicOrder(state.symbols);
        rust::Vec<rust::String> names;
        names.reserve(sorted.size());
        for (auto * attr : sorted) {
            std::string_view name = state.symbols[attr->name];
            names.emplace_back(name.data(), name.size());
        }
        ChildPlan plan = plan_children(node, std::move(names));
        if (plan.only_if_recurse_for_derivations && !recursesForDerivations(attrs)) return;
        // The plan keeps the given order, so its names are found by one pass over the sorted
        // attributes: no symbol-table lookup per child (a hash probe of a table as large as
        // the flake's names, a visible share of a 20 000-output walk).
        size_t next = 0;
        for (auto & name : plan.names) {
            auto * attr = findFrom(attrs, sorted, next, std::string_view(name.data(), name.size()));
            if (!attr) continue;
            uint32_t child = node_enter(node, name);
            if (child == SKIP) continue;
            visit(child, *attr->value, plan.select);
        }
    }

private:
    // The attribute called `name` at or after `next` in `sorted`, moving `next` past it; by
    // name lookup if it is not there (never, while the plan keeps the order it was given).
    const nix::Attr * findFrom(nix::Value & attrs, const std::vector<const nix::Attr *> & sorted, size_t & next, std::string_view name)
    {
        for (size_t i = next; i < sorted.size(); ++i) {
            if (std::string_view(state.symbols[sorted[i]->name]) == name) {
                next = i + 1;
                return sorted[i];
            }
        }
        return attrs.attrs()->get(state.symbols.create(std::string(name)));
    }

    // Evaluate one node and its children; always leaves the node closed in Rust.
    void visit(uint32_t node, nix::Value & value, const rust::Vec<rust::String> & select)
    {
        NodeFacts facts{NodeKind::Error, "", ""};
        try {
            // 2.26's evaluator never checks for Ctrl-C itself; checking here makes a walk
            // stoppable between nodes.
            nix::checkInterrupt();
            nix::Value & v = selectPath(value, select);
            facts.kind = kindOf(v);
            if (v.type() == nix::nAttrs) {
                auto type = typeAttr(v);
                if (type == "derivation") {
                    facts.kind = NodeKind::Derivation;
                    if (forceDrvPaths) facts.drv_path = drvPath(v);
                } else if (type == "app") {
                    facts.kind = NodeKind::App;
                } else {
                    walkChildren(v, node);
                }
            }
        } catch (nix::Interrupted &) {
            throw; // Ctrl-C: Rust closes the open nodes when the walk finishes.
        } catch (nix::BaseError & e) {
            facts.kind = NodeKind::Error;
            facts.error = messageOf(e);
        } catch (std::exception & e) {
            facts.kind = NodeKind::Error;
            facts.error = e.what();
        }
        node_exit(node, facts);
    }

    nix::Value & selectPath(nix::Value & start, const rust::Vec<rust::String> & path)
    {
        nix::Value * cur = &start;
        state.forceValue(*cur, nix::noPos);
        for (auto & component : path) {
            std::string name(component);
            state.forceAttrs(*cur, nix::noPos, "while selecting an entry point");
            auto * attr = cur->attrs()->get(state.symbols.create(name));
            if (!attr) throw nix::Error("attribute '%s' missing", name);
            cur = attr->value;
            state.forceValue(*cur, attr->pos);
        }
        return *cur;
    }

    std::string typeAttr(nix::Value & v)
    {
        auto * attr = v.attrs()->get(compat::symType(state));
        if (!attr) return "";
        state.forceValue(*attr->value, attr->pos);
        if (attr->value->type() != nix::nString) return "";
        return std::string(attr->value->string_view());
    }

    std::string drvPath(nix::Value & v)
    {
        auto * attr = v.attrs()->get(compat::symDrvPath(state));
        if (!attr) return "";
        state.forceValue(*attr->value, attr->pos);
        // Only the characters: parsing the string's context into store paths, as forceString
        // does, was a visible share of a 20 000-output walk (perf: StorePath constructors).
        if (attr->value->type() == nix::nString) return std::string(attr->value->string_view());
        nix::NixStringContext context; // not a string: Nix's own error, as before
        return std::string(state.forceString(*attr->value, context, attr->pos, "while evaluating drvPath"));
    }

    bool recursesForDerivations(nix::Value & v)
    {
        auto * attr = v.attrs()->get(compat::symRecurseForDerivations(state));
        return attr && state.forceBool(*attr->value, attr->pos, "while evaluating recurseForDerivations");
    }
};

} // namespace

FlakeFacts describeFlake(const nix::flake::LockedFlake & locked, const std::string & original)
{
    auto & ref = locked.flake.lockedRef;
    auto rev = ref.input.getRev();
    auto narHash = ref.input.getNarHash();
    auto lastModified = ref.input.getLastModified();
    auto dirtyRev = nix::fetchers::maybeGetStrAttr(ref.input.attrs, "dirtyRev");
    return FlakeFacts{
        .original_ref = original,
        .locked_url = ref.to_string(),
        .rev = rev ? rev->gitRev() : "",
        .dirty_rev = dirtyRev.value_or(""),
        .nar_hash = narHash ? narHash->to_string(nix::HashFormat::SRI, true) : "",
        .last_modified = lastModified ? int64_t(*lastModified) : -1,
    };
}

void walkFlake(nix::EvalState & state, const WalkRequest & request)
{
    walk_phase("fetch-lock");
    std::string original(request.flake);
    auto ref = compat::parseFlakeRefAt(state, original, std::string(request.base_dir));
    auto locked = compat::lockFlakeInMemory(state, ref);
    walk_flake(describeFlake(locked, original));

    walk_phase("outputs");
    auto * flake = state.allocValue();
    nix::flake::callFlake(state, locked, *flake);
    state.forceAttrs(*flake, nix::noPos, "while evaluating the flake");
    auto * outputs = flake->attrs()->get(state.symbols.create("outputs"));
    if (!outputs) throw nix::Error("flake '%s' has no outputs", original);
    state.forceAttrs(*outputs->value, nix::noPos, "while evaluating the flake's outputs");

    walk_phase("walk");
    Walker(state, request.force_drv_paths).walkChildren(*outputs->value, ROOT);
}

} // namespace evalcost
