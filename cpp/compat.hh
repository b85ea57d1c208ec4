// compat.hh: every difference between the Nix versions the plugin builds against lives here.
//
// build.rs defines EVALCOST_NIX_MINOR from `pkg-config --modversion nix-expr` (26 for 2.26.x).
// Each branch names the Nix release that introduced the difference. Nothing outside this header
// may test EVALCOST_NIX_MINOR.
#pragma once

#ifndef EVALCOST_NIX_MINOR
#error "EVALCOST_NIX_MINOR must be defined by build.rs"
#endif

#if EVALCOST_NIX_MINOR < 28
// Nix 2.26/2.27: flat headers (-I.../include/nix); the generated config headers must come first.
#include "config-util.hh"
#include "config-store.hh"
#include "config-expr.hh"
#include "eval.hh"
#include "eval-gc.hh"
#include "eval-inline.hh"
#include "globals.hh"
#include "primops.hh"
#include "signals.hh"
#include "common-eval-args.hh"
#include "flake/flake.hh"
#else
// Nix 2.28+: headers live under nix/<component>/.
#include "nix/expr/eval.hh"
#include "nix/expr/eval-gc.hh"
#include "nix/expr/eval-inline.hh"
#include "nix/store/globals.hh"
#include "nix/expr/primops.hh"
#include "nix/util/signals.hh"
#include "nix/cmd/common-eval-args.hh"
#include "nix/flake/flake.hh"
#endif

#include <gc/gc.h>

// Reading private members without patching Nix: an explicit template instantiation may name a
// private member (C++ [temp.explicit]/14), and the friend function it defines hands the
// member pointer out. If Nix renames a member, this fails to compile instead of misreading.
namespace evalcost::compat {
template<typename Tag, typename Tag::type Member>
struct Expose
{
    friend typename Tag::type memberOf(Tag) { return Member; }
};
} // namespace evalcost::compat

#define EVALCOST_COMMA ,
#define EVALCOST_EXPOSE(Class, Type, Name)                                      \
    namespace evalcost::compat {                                                \
    struct Tag_##Name { using type = Type Class::*; friend type memberOf(Tag_##Name); }; \
    template struct Expose<Tag_##Name, &Class::Name>;                           \
    }

#if EVALCOST_NIX_MINOR < 32
// Nix up to 2.31: the evaluation counters are plain `unsigned long` members of EvalState,
// private; nrThunks is a global defined in eval.cc without a declaration in any header.
namespace nix { extern unsigned long nrThunks; }
#define EVALCOST_EXPOSE_COUNTER(Name) EVALCOST_EXPOSE(nix::EvalState, unsigned long, Name)
namespace evalcost::compat {
inline uint64_t counterValue(unsigned long v) { return v; }
inline uint64_t thunkCount() { return nix::nrThunks; }
} // namespace evalcost::compat
#else
// Nix 2.32+: counters are `nix::Counter` (atomic) and count only while Counter::enabled;
// nrThunks is file-static in eval.cc and not reachable. Not supported yet: fail loudly.
#error "nix-evalcost supports Nix 2.26 to 2.31 for now; see docs/development.md"
#endif

// PosTable's origins and line cache (see warmPositionLineCache below).
EVALCOST_EXPOSE(nix::PosTable, std::map<uint32_t EVALCOST_COMMA nix::PosTable::Origin>, origins)
EVALCOST_EXPOSE(nix::PosTable, nix::Sync<std::map<uint32_t EVALCOST_COMMA std::vector<uint32_t>>>, lines)

EVALCOST_EXPOSE_COUNTER(nrEnvs)
EVALCOST_EXPOSE_COUNTER(nrValuesInEnvs)
EVALCOST_EXPOSE_COUNTER(nrValues)
EVALCOST_EXPOSE_COUNTER(nrListElems)
EVALCOST_EXPOSE_COUNTER(nrLookups)
EVALCOST_EXPOSE_COUNTER(nrAttrsets)
EVALCOST_EXPOSE_COUNTER(nrAttrsInAttrsets)
EVALCOST_EXPOSE_COUNTER(nrAvoided)
EVALCOST_EXPOSE_COUNTER(nrOpUpdates)
EVALCOST_EXPOSE_COUNTER(nrOpUpdateValuesCopied)
EVALCOST_EXPOSE_COUNTER(nrListConcats)
EVALCOST_EXPOSE_COUNTER(nrPrimOpCalls)
EVALCOST_EXPOSE_COUNTER(nrFunctionCalls)

// Read one private counter of `state` by name.
#define EVALCOST_COUNTER(state, Name) \
    evalcost::compat::counterValue((state).*memberOf(evalcost::compat::Tag_##Name{}))

namespace evalcost::compat {

// The field of nix::PrimOp that holds the implementation.
#if EVALCOST_NIX_MINOR < 30
// Nix up to 2.29: `fun`.
template<typename F>
inline void setPrimOpImpl(nix::PrimOp & op, F f) { op.fun = f; }
#else
// Nix 2.30+: renamed to `impl`.
template<typename F>
inline void setPrimOpImpl(nix::PrimOp & op, F f) { op.impl = f; }
#endif

// Lock a flake the way `nix eval`/`nix flake show` do, but never write flake.lock: an
// incomplete lock file is completed in memory only. 2.26: flake settings are the global
// nix::flakeSettings of libcmd, passed explicitly to lockFlake.
inline nix::flake::LockedFlake lockFlakeInMemory(nix::EvalState & state, const nix::FlakeRef & ref)
{
    return nix::flake::lockFlake(nix::flakeSettings, state, ref,
        nix::flake::LockFlags{.updateLockFile = true, .writeLockFile = false, .allowUnlocked = true});
}

// Parse a flake reference relative to baseDir, so "." means what it means on the command line
// (a Git work tree becomes git+file, a plain directory path:).
inline nix::FlakeRef parseFlakeRefAt(nix::EvalState & state, const std::string & ref, const std::string & baseDir)
{
    return nix::parseFlakeRef(state.fetchSettings, ref, baseDir, /*allowMissing=*/false, /*isFlake=*/true);
}

inline const std::string & nixVersion() { return nix::nixVersion; }

// `trace-function-calls`, switched on only while a walk profiles call stacks. 2.26: the
// EvalState holds a const reference to the (non-const) global nix::evalSettings, so writing
// through it is well-defined.
inline bool traceFunctionCalls(nix::EvalState & state) { return state.settings.traceFunctionCalls; }

// Nix 2.26: PosTable::operator[] takes a *copy* of its per-file line table
// (`auto linesForInput = (*lines)[origin->offset]`) and never stores what it computes, so every
// lookup re-reads the source file. With trace-function-calls every call looks its position up:
// that re-reading was most of the cost of profiling stacks. Filling the table once per source
// file (with Nix's own algorithm) makes the copy non-empty and the file is not read again.
// `seen` is how many origins were filled already; the check is a map size, cheap per call.
inline void warmPositionLineCache(nix::EvalState & state, size_t & seen)
{
    auto & origins = state.positions.*memberOf(Tag_origins{});
    if (origins.size() == seen) return;
    auto lines = (state.positions.*memberOf(Tag_lines{})).lock();
    for (auto & [offset, origin] : origins) {
        auto & table = (*lines)[offset];
        if (!table.empty()) continue;
        auto source = nix::Pos(0, 0, origin.origin).getSource().value_or("");
        const char * begin = source.data();
        for (nix::Pos::LinesIterator it(source), end; it != end; it++)
            table.push_back(it->data() - begin);
        if (table.empty()) table.push_back(0);
    }
    seen = origins.size();
}
inline void setTraceFunctionCalls(nix::EvalState & state, bool on)
{
    const_cast<nix::EvalSettings &>(state.settings).traceFunctionCalls = on;
}

} // namespace evalcost::compat
