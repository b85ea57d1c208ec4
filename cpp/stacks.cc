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

#include <array>
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

} // namespace

struct StackProfiling::Impl
{
    nix::EvalState & state;
    nix::Logger * previous;
    bool previousTrace;
    TraceLogger logger;

    explicit Impl(nix::EvalState & state)
        : state(state), previous(nix::logger), previousTrace(compat::traceFunctionCalls(state)), logger(*nix::logger, state)
    {
        nix::logger = &logger;
        compat::setTraceFunctionCalls(state, true);
    }

    ~Impl()
    {
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
