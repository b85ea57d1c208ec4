// stacks.cc: where call stacks are sensed.
//
// Nix up to 2.29 has no profiler hook: `trace-function-calls` makes Nix log
// "function-trace entered POS at NS" and "... exited ..." for every call (lambdas and builtins
// alike; FunctionCallTrace is RAII, so an exception still logs the exit and frames stay
// balanced). A logger wrapper hands those lines to Rust as they are produced: nothing reaches
// stderr and nothing is stored as text. Frames are call sites.
//
// Nix 2.30+ calls EvalProfiler hooks around every call (the exit hook from a Finally, so frames
// stay balanced through exceptions). Frames are the called functions: a lambda's name and
// position, or `primop NAME`, named once per distinct callee.
#include "stacks.hh"
#include "nix-evalcost/src/bridge.rs.h"

#include "got.hh"

#include <array>
#include <dlfcn.h>
#include <sstream>
#include <unordered_map>

namespace evalcost {

#if !EVALCOST_STACKS_VIA_PROFILER

rust::Str stack_source() noexcept { return "trace-function-calls"; }

namespace {

constexpr std::string_view tracePrefix = "function-trace ";

class TraceLogger : public nix::Logger
{
    nix::Logger & inner;
    nix::EvalState & state;
    size_t originsWarmed = 0;

public:
    TraceLogger(nix::Logger & inner, nix::EvalState & state) : inner(inner), state(state) {}

    void log(nix::Verbosity lvl, std::string_view s) override
    {
        if (lvl == nix::lvlInfo && s.starts_with(tracePrefix)) {
            compat::warmPositionLineCache(state, originsWarmed);
            stack_event(rust::Str(s.data(), s.size()));
            return;
        }
        inner.log(lvl, s);
    }

    // Everything else is the wrapped logger's business.
    void stop() override { inner.stop(); }
    void pause() override { inner.pause(); }
    void resume() override { inner.resume(); }
    bool isVerbose() override { return inner.isVerbose(); }
    void logEI(const nix::ErrorInfo & ei) override { inner.logEI(ei); }
    void warn(const std::string & msg) override { inner.warn(msg); }
    void startActivity(nix::ActivityId act, nix::Verbosity lvl, nix::ActivityType type, const std::string & s,
        const Fields & fields, nix::ActivityId parent) override
    {
        inner.startActivity(act, lvl, type, s, fields, parent);
    }
    void stopActivity(nix::ActivityId act) override { inner.stopActivity(act); }
    void result(nix::ActivityId act, nix::ResultType type, const Fields & fields) override { inner.result(act, type, fields); }
    void writeToStdout(std::string_view s) override { inner.writeToStdout(s); }
    std::optional<char> ask(std::string_view s) override { return inner.ask(s); }
    void setPrintBuildLogs(bool printBuildLogs) override { inner.setPrintBuildLogs(printBuildLogs); }
};

// ---- the trace taken at its source ---------------------------------------------------------
//
// Formatting two messages per call and parsing them again was most of the cost of profiling
// stacks on Nix 2.26 (perf, fib 24: boost::format, ostreams and the logger). Where Nix's
// libraries call FunctionCallTrace's constructor and destructor through their GOT (2.26.3 does:
// libnixexpr has a jump slot for each), those calls come here: while a profile runs, the
// constructor keeps the position, as Nix's does, and enters the frame; the destructor leaves it.
// Otherwise both call Nix's own. A frame is named as the message would have named it
// (`out << pos`), once per distinct call site. Where the slots cannot be redirected, the
// messages and the logger above remain the way.
namespace direct {

using Enter = void (*)(nix::FunctionCallTrace *, const nix::Pos &);
using Exit = void (*)(nix::FunctionCallTrace *);

Enter realEnter = nullptr;
Exit realExit = nullptr;
bool hooked = false;
// The profiled evaluator while a profile runs here, else nullptr.
nix::EvalState * profiling = nullptr;
size_t originsWarmed = 0;
// Traces constructed here and not destroyed yet.
uint64_t open = 0;
// Call site (origin, line, column) -> frame id in Rust's call tree.
std::unordered_map<std::string, uint32_t> sites;
// The key of the current call, reused: no allocation per call once grown.
std::string key;

template<typename T>
void append(std::string & out, const T & value)
{
    out.append(reinterpret_cast<const char *>(&value), sizeof value);
}

// A position's identity without formatting it. Origins live as long as the evaluator (its
// position table holds them), so their addresses identify them.
void keyOf(const nix::Pos & pos, std::string & out)
{
    out.clear();
    append(out, pos.line);
    append(out, pos.column);
    if (auto * path = std::get_if<nix::SourcePath>(&pos.origin)) {
        out.push_back('p');
        append(out, static_cast<const void *>(&*path->accessor));
        out += path->path.abs();
    } else if (auto * string = std::get_if<nix::Pos::String>(&pos.origin)) {
        out.push_back('s');
        append(out, static_cast<const void *>(&*string->source));
    } else if (auto * in = std::get_if<nix::Pos::Stdin>(&pos.origin)) {
        out.push_back('i');
        append(out, static_cast<const void *>(&*in->source));
    } else {
        out.push_back('-');
    }
}

uint32_t frameOf(const nix::Pos & pos)
{
    keyOf(pos, key);
    if (auto it = sites.find(key); it != sites.end()) return it->second;
    std::ostringstream name;
    name << pos;
    auto text = name.str();
    uint32_t id = stack_frame(rust::Str(text.data(), text.size()));
    sites.emplace(key, id);
    return id;
}

void enter(nix::FunctionCallTrace * trace, const nix::Pos & pos)
{
    if (!profiling) return realEnter(trace, pos);
    // What Nix's constructor does besides logging: the trace keeps its position.
    new (const_cast<nix::Pos *>(&trace->pos)) nix::Pos(pos);
    ++open;
    uint32_t frame = 0;
    try {
        compat::warmPositionLineCache(*profiling, originsWarmed);
        frame = frameOf(pos);
    } catch (...) {
        // Entered all the same, under the first frame: the exit must find a frame to close.
    }
    stack_enter(frame);
}

void exit(nix::FunctionCallTrace * trace)
{
    // Traces built before the profile started are older than every trace built here, so they
    // are destroyed after them: while `open` is positive, the innermost trace is one of ours.
    if (open == 0) return realExit(trace);
    --open;
    stack_exit();
    trace->pos.~Pos();
}

// Redirects both, once per process; both or neither.
void install()
{
    static bool tried = false;
    if (tried) return;
    tried = true;
    if (!dlsym(RTLD_DEFAULT, compat::functionCallTraceEnter) || !dlsym(RTLD_DEFAULT, compat::functionCallTraceExit))
        return;
    int entered = 0, exited = 0;
    realEnter = reinterpret_cast<Enter>(got::redirect(compat::functionCallTraceEnter, reinterpret_cast<void *>(&enter), &entered));
    realExit = reinterpret_cast<Exit>(got::redirect(compat::functionCallTraceExit, reinterpret_cast<void *>(&exit), &exited));
    hooked = realEnter && realExit && entered > 0 && exited > 0;
    if (!hooked) {
        if (realEnter) got::redirect(compat::functionCallTraceEnter, reinterpret_cast<void *>(realEnter));
        if (realExit) got::redirect(compat::functionCallTraceExit, reinterpret_cast<void *>(realExit));
    }
}

} // namespace direct

} // namespace

struct StackProfiling::Impl
{
    nix::EvalState & state;
    nix::Logger * previous;
    bool previousTrace;
    nix::EvalState * previousDirect;
    TraceLogger logger;

    explicit Impl(nix::EvalState & state)
        : state(state)
        , previous(nix::logger)
        , previousTrace(compat::traceFunctionCalls(state))
        , previousDirect(direct::profiling)
        , logger(*nix::logger, state)
    {
        nix::logger = &logger;
        compat::setTraceFunctionCalls(state, true);
        direct::install();
        if (direct::hooked) {
            // A new call tree in Rust: its frame ids start again.
            direct::sites.clear();
            direct::profiling = &state;
        }
    }

    ~Impl()
    {
        direct::profiling = previousDirect;
        direct::sites.clear();
        compat::setTraceFunctionCalls(state, previousTrace);
        nix::logger = previous;
    }
};


#else // EVALCOST_STACKS_VIA_PROFILER

rust::Str stack_source() noexcept { return "eval-profiler"; }

namespace {

class CallProfiler : public nix::EvalProfiler
{
public:
    bool active = false;

    // A new profile has a new call tree in Rust, whose frame ids start again.
    void start()
    {
        frames.clear();
        recent.fill({});
        active = true;
    }

private:
    std::unordered_map<const void *, uint32_t> frames; // callee -> frame id in Rust

    // In front of `frames`: a call mostly finds its callee here, where the map's find alone was
    // 2% of a stacks walk (perf, Nix 2.35, fib 27).
    struct Recent
    {
        const void * callee = nullptr;
        uint32_t frame = 0;
    };
    std::array<Recent, 256> recent{};

    Recent & recentSlot(const void * callee) { return recent[(reinterpret_cast<uintptr_t>(callee) >> 4) % recent.size()]; }

    Hooks getNeededHooksImpl() const override { return Hooks().set(preFunctionCall).set(postFunctionCall); }

    static std::string position(nix::EvalState & state, nix::PosIdx pos)
    {
        std::ostringstream out;
        out << state.positions[pos];
        return out.str();
    }

    uint32_t frameOf(nix::EvalState & state, const nix::Value & v, nix::PosIdx callPos)
    {
        const void * key = nullptr;
        if (v.isLambda()) key = v.lambda().fun;
        else if (v.isPrimOp()) key = v.primOp();
        else if (v.isPrimOpApp()) key = v.primOpAppPrimOp();
        if (key) {
            auto & slot = recentSlot(key);
            if (slot.callee == key) return slot.frame;
            if (auto it = frames.find(key); it != frames.end()) {
                slot = {key, it->second};
                return it->second;
            }
        }
        std::string name;
        if (v.isLambda()) {
            auto * fun = v.lambda().fun;
            name = (fun->name ? std::string(state.symbols[fun->name]) : std::string("«lambda»")) + " " + position(state, fun->pos);
        } else if (v.isPrimOp() || v.isPrimOpApp()) {
            auto & op = v.isPrimOp() ? *v.primOp() : *v.primOpAppPrimOp();
            name = "primop " + (op.name.starts_with("__") ? op.name.substr(2) : op.name);
        } else {
            // Not yet forced, or a functor: named by where it is called.
            name = "«call» " + position(state, callPos);
        }
        uint32_t id = stack_frame(rust::Str(name.data(), name.size()));
        if (key) {
            frames.emplace(key, id);
            recentSlot(key) = {key, id};
        }
        return id;
    }

public:
    void preFunctionCallHook(nix::EvalState & state, const nix::Value & v, std::span<nix::Value *>, const nix::PosIdx pos) override
    {
        if (active) stack_enter(frameOf(state, v, pos));
    }

    void postFunctionCallHook(nix::EvalState &, const nix::Value &, std::span<nix::Value *>, const nix::PosIdx) override
    {
        if (active) stack_exit();
    }
};

// EvalState's MultiEvalProfiler can add a profiler but not remove one: each EvalState gets one,
// switched on only while a walk profiles stacks.
CallProfiler & profilerFor(nix::EvalState & state)
{
    static std::unordered_map<nix::EvalState *, nix::ref<CallProfiler>> profilers;
    auto it = profilers.find(&state);
    if (it == profilers.end()) {
        auto p = nix::make_ref<CallProfiler>();
        compat::addProfiler(state, p);
        it = profilers.emplace(&state, p).first;
    }
    return *it->second;
}

} // namespace

struct StackProfiling::Impl
{
    CallProfiler & profiler;
    explicit Impl(nix::EvalState & state) : profiler(profilerFor(state)) { profiler.start(); }
    ~Impl() { profiler.active = false; }
};

#endif

StackProfiling::StackProfiling(nix::EvalState & state) : impl(std::make_unique<Impl>(state)) {}
StackProfiling::~StackProfiling() = default;

} // namespace evalcost
