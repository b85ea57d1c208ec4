// stacks.cc: where call stacks are sensed, on Nix 2.26 without a profiler hook.
//
// `trace-function-calls` makes Nix log "function-trace entered POS at NS" and "... exited ..."
// for every call (lambdas and builtins alike; FunctionCallTrace is RAII, so an exception still
// logs the exit and frames stay balanced). A logger wrapper hands those lines to Rust as they
// are produced: nothing reaches stderr and nothing is stored as text.
#include "stacks.hh"
#include "nix-evalcost/src/bridge.rs.h"

namespace evalcost {

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

StackProfiling::StackProfiling(nix::EvalState & state) : impl(std::make_unique<Impl>(state)) {}
StackProfiling::~StackProfiling() = default;

} // namespace evalcost
