// compat.hh: every difference between the Nix versions the plugin builds against lives here.
//
// build.rs defines EVALCOST_NIX_MINOR from `pkg-config --modversion nix-expr` (26 for 2.26.x).
// Each branch names the Nix release that introduced the difference. Nothing outside this header
// may test EVALCOST_NIX_MINOR; other files test the EVALCOST_* feature macros defined here.
//
// Tested: 2.26.3 (CI, scripts/nix-env). Checked locally: 2.34.8 (see docs/development.md).
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
#include "config-global.hh"
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
#include "nix/util/config-global.hh"
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

// ---- counters ----------------------------------------------------------------------------

#if EVALCOST_NIX_MINOR < 32
// Nix up to 2.31: the evaluation counters are plain `unsigned long` members of EvalState,
// private; nrThunks is a global defined in eval.cc without a declaration in any header.
namespace nix { extern unsigned long nrThunks; }
#define EVALCOST_STATE_COUNTER_TYPE unsigned long
#define EVALCOST_HAS_THUNKS 1
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrEnvs)
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrValuesInEnvs)
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrValues)
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrListElems)
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrAttrsets)
EVALCOST_EXPOSE(nix::EvalState, unsigned long, nrAttrsInAttrsets)
#else
// Nix 2.32+: counters are atomic nix::Counter that count only while Counter::enabled (set at
// start-up from NIX_SHOW_STATS); allocation counters moved to EvalMemory, readable through
// getStats(); nrThunks became file-static in eval.cc and cannot be read (reported as 0).
#define EVALCOST_STATE_COUNTER_TYPE nix::Counter
#define EVALCOST_HAS_THUNKS 0
#endif

EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrLookups)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrAvoided)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrOpUpdates)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrOpUpdateValuesCopied)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrListConcats)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrPrimOpCalls)
EVALCOST_EXPOSE(nix::EvalState, EVALCOST_STATE_COUNTER_TYPE, nrFunctionCalls)

namespace evalcost::compat {

template<typename Tag>
inline uint64_t stateCounter(nix::EvalState & state) { return uint64_t(state.*memberOf(Tag{})); }

#if EVALCOST_NIX_MINOR < 32
inline uint64_t thunkCount() { return nix::nrThunks; }
inline uint64_t envs(nix::EvalState & s) { return stateCounter<Tag_nrEnvs>(s); }
inline uint64_t valuesInEnvs(nix::EvalState & s) { return stateCounter<Tag_nrValuesInEnvs>(s); }
inline uint64_t values(nix::EvalState & s) { return stateCounter<Tag_nrValues>(s); }
inline uint64_t listElems(nix::EvalState & s) { return stateCounter<Tag_nrListElems>(s); }
inline uint64_t attrsets(nix::EvalState & s) { return stateCounter<Tag_nrAttrsets>(s); }
inline uint64_t attrsInAttrsets(nix::EvalState & s) { return stateCounter<Tag_nrAttrsInAttrsets>(s); }
// Counting is always on.
inline bool enableCounters(bool) { return true; }
#else
inline uint64_t thunkCount() { return 0; }
inline uint64_t envs(nix::EvalState & s) { return s.mem.getStats().nrEnvs; }
inline uint64_t valuesInEnvs(nix::EvalState & s) { return s.mem.getStats().nrValuesInEnvs; }
inline uint64_t values(nix::EvalState & s) { return s.mem.getStats().nrValues; }
inline uint64_t listElems(nix::EvalState & s) { return s.mem.getStats().nrListElems; }
inline uint64_t attrsets(nix::EvalState & s) { return s.mem.getStats().nrAttrsets; }
inline uint64_t attrsInAttrsets(nix::EvalState & s) { return s.mem.getStats().nrAttrsInAttrsets; }
// Counting while measuring; returns the previous state so it can be restored (left on, Nix
// would print the whole NIX_SHOW_STATS JSON at exit).
inline bool enableCounters(bool on)
{
    bool previous = nix::Counter::enabled;
    nix::Counter::enabled = on;
    return previous;
}
#endif

// ---- primops, lists ------------------------------------------------------------------------

// A primop with its implementation. (Since 2.30 the implementation field has no default, so it
// must be given in the initializer.)
template<typename F>
inline nix::PrimOp makePrimOp(std::string name, std::vector<std::string> args, const char * doc, F f)
{
#if EVALCOST_NIX_MINOR < 30
    // Nix up to 2.29: the field is `fun`.
    return nix::PrimOp{.name = std::move(name), .args = std::move(args), .doc = doc, .fun = f};
#else
    // Nix 2.30+: renamed to `impl`.
    return nix::PrimOp{.name = std::move(name), .args = std::move(args), .doc = doc, .impl = f};
#endif
}

// A string value.
inline void mkString(nix::EvalState & state, nix::Value & v, std::string_view s)
{
#if EVALCOST_NIX_MINOR < 30
    // Nix 2.26.
    (void) state;
    v.mkString(s);
#else
    // Nix 2.30+ (checked on 2.34; in CI on 2.35): strings are allocated through EvalMemory.
    v.mkString(s, state.mem);
#endif
}

// Iterating over a list value's items.
template<typename F>
inline void forEachListItem(nix::Value & list, F f)
{
#if EVALCOST_NIX_MINOR < 30
    // Nix 2.26: listItems().
    for (auto * item : list.listItems()) f(*item);
#else
    // Nix 2.30+ (checked on 2.34; in CI on 2.35): listView().
    for (auto * item : list.listView()) f(*item);
#endif
}

// Well-known attribute names.
#if EVALCOST_NIX_MINOR < 30
// Nix 2.26: members of EvalState (sType, sDrvPath, ...).
inline nix::Symbol symType(nix::EvalState & s) { return s.sType; }
inline nix::Symbol symDrvPath(nix::EvalState & s) { return s.sDrvPath; }
inline nix::Symbol symRecurseForDerivations(nix::EvalState & s) { return s.sRecurseForDerivations; }
#else
// Nix 2.30+ (checked on 2.34; in CI on 2.35): grouped in EvalState::s.
inline nix::Symbol symType(nix::EvalState & s) { return s.s.type; }
inline nix::Symbol symDrvPath(nix::EvalState & s) { return s.s.drvPath; }
inline nix::Symbol symRecurseForDerivations(nix::EvalState & s) { return s.s.recurseForDerivations; }
#endif

// ---- flakes --------------------------------------------------------------------------------

// Lock a flake the way `nix eval`/`nix flake show` do, but never write flake.lock: an
// incomplete lock file is completed in memory only. Flake settings are the global
// nix::flakeSettings of libcmd, passed explicitly to lockFlake (2.26 to 2.34).
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

// ---- passive profiling -------------------------------------------------------------------------

// The functions whose calls passive profiling redirects (cpp/got.hh), with their exact types:
// a wrapper must have the signature of what it stands for. Mangled names are what the dynamic
// linker binds (`nm -D`); the same on 2.26 and 2.35.
using EvalStateConstructor = void (*)(nix::EvalState *, const nix::LookupPath &, nix::ref<nix::Store>,
    const nix::fetchers::Settings &, const nix::EvalSettings &, std::shared_ptr<nix::Store>);
inline constexpr const char * evalStateConstructorSymbol =
    "_ZN3nix9EvalStateC1ERKNS_10LookupPathENS_3refINS_5StoreEEERKNS_8fetchers8SettingsERKNS_12EvalSettingsESt10shared_ptrIS5_E";

using LockFlake = nix::flake::LockedFlake (*)(const nix::flake::Settings &, nix::EvalState &, const nix::FlakeRef &,
    const nix::flake::LockFlags &);
inline constexpr const char * lockFlakeSymbol =
    "_ZN3nix5flake9lockFlakeERKNS0_8SettingsERNS_9EvalStateERKNS_8FlakeRefERKNS0_9LockFlagsE";

// Whether Nix was interrupted (SIGINT): its flag (signals-impl.hh, the same on 2.26 and 2.35),
// without the interrupt callbacks that nix::isInterrupted() may also run.
inline bool interrupted() { return nix::unix::_isInterrupted; }

} // namespace evalcost::compat

// ---- call stacks ---------------------------------------------------------------------------

#if EVALCOST_NIX_MINOR < 30
// Nix up to 2.29: no profiler hook. With `trace-function-calls`, every call builds a
// FunctionCallTrace, whose constructor and destructor log "function-trace entered/exited POS at
// NS". cpp/stacks.cc redirects the calls Nix's libraries make to both (their GOT slots) and
// takes the position itself, or, where it cannot, consumes the messages through a logger
// wrapper; frames are call sites.
#define EVALCOST_STACKS_VIA_PROFILER 0
#if EVALCOST_NIX_MINOR < 28
#include "function-trace.hh"
#else
#include "nix/expr/function-trace.hh"
#endif

namespace evalcost::compat {
// The complete-object constructor and destructor (Itanium C++ ABI names), as Nix up to 2.29
// declares them: `FunctionCallTrace(const Pos & pos)` and `~FunctionCallTrace()`.
inline constexpr const char * functionCallTraceEnter = "_ZN3nix17FunctionCallTraceC1ERKNS_3PosE";
inline constexpr const char * functionCallTraceExit = "_ZN3nix17FunctionCallTraceD1Ev";
} // namespace evalcost::compat

// PosTable's origins and line cache (see warmPositionLineCache below).
EVALCOST_EXPOSE(nix::PosTable, std::map<uint32_t EVALCOST_COMMA nix::PosTable::Origin>, origins)
EVALCOST_EXPOSE(nix::PosTable, nix::Sync<std::map<uint32_t EVALCOST_COMMA std::vector<uint32_t>>>, lines)

namespace evalcost::compat {

// `trace-function-calls`, switched on only while a walk profiles call stacks. 2.26: the
// EvalState holds a const reference to the (non-const) global nix::evalSettings, so writing
// through it is well-defined.
inline bool traceFunctionCalls(nix::EvalState & state) { return state.settings.traceFunctionCalls; }
inline void setTraceFunctionCalls(nix::EvalState & state, bool on)
{
    const_cast<nix::EvalSettings &>(state.settings).traceFunctionCalls = on;
}

// Nix 2.26: PosTable::operator[] takes a *copy* of its per-file line table
// (`auto linesForInput = (*lines)[origin->offset]`) and never stores what it computes, so every
// lookup re-reads the source file (2.34 caches it). With trace-function-calls every call looks
// its position up: that re-reading was most of the cost of profiling stacks. Filling the table
// once per source file (with Nix's own algorithm) makes the copy non-empty and the file is not
// read again. `seen` is how many origins were filled already; the check is a map size.
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

} // namespace evalcost::compat
#else
// Nix 2.30+: EvalState::profiler (a private MultiEvalProfiler) takes EvalProfiler instances whose
// hooks see every call with its callee; frames name the lambda or `primop NAME`.
#define EVALCOST_STACKS_VIA_PROFILER 1
EVALCOST_EXPOSE(nix::EvalState, nix::MultiEvalProfiler, profiler)

namespace evalcost::compat {
inline void addProfiler(nix::EvalState & state, nix::ref<nix::EvalProfiler> p)
{
    (state.*memberOf(Tag_profiler{})).addProfiler(p);
}
} // namespace evalcost::compat
#endif
