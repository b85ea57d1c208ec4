// passive.cc: passive profiling's sensors. Any evaluating `nix` command, with the plugin and
// `evalcost-dir` in nix.conf, is measured from the moment its evaluator exists to the moment
// the evaluation is over, without a builtin being called:
//
// - the settings (`evalcost-*`), registered with Nix so nix.conf and `--option` accept them;
// - the evaluator's birth: EvalState's constructor, reached by redirecting the calls Nix's
//   own code makes to it (got.hh). Sampling is decided there, once per process;
// - the evaluation's end: EvalState::maybePrintStats (where Nix prints NIX_SHOW_STATS, so our
//   totals are Nix's), else the destructor, else an exec (`nix develop`, `nix-shell`, `nix run`
//   replace the process), else process exit.
//
// Accounting, the sampling decision and the report are Rust's (src/passive.rs).
#include "passive.hh"
#include "got.hh"
#include "stacks.hh"
#include "walk.hh"
#include "nix-evalcost/src/bridge.rs.h"

#include <exception>
#include <unistd.h>

namespace evalcost {
namespace {

// ---- settings ------------------------------------------------------------------------------

struct PassiveConfig : nix::Config
{
    std::vector<std::unique_ptr<nix::Setting<std::string>>> settings;
};

// Never destroyed: Nix's global configuration keeps a pointer to it until the process ends.
PassiveConfig & passiveConfig()
{
    static auto * config = new PassiveConfig;
    return *config;
}

// The settings' values, in the core's `passive::SETTINGS` order.
rust::Vec<rust::String> passiveSettingValues()
{
    rust::Vec<rust::String> values;
    for (auto & s : passiveConfig().settings) values.push_back(rust::String(s->get()));
    return values;
}

// ---- the evaluator being measured ------------------------------------------------------------

nix::EvalState * measured = nullptr; // the evaluator a passive session measures, if any
pid_t measuredPid = 0;               // forked children inherit `measured` but must not report
bool countersWereOn = false;
std::unique_ptr<StackProfiling> passiveStacks;
bool decided = false; // the sampling decision is taken once per process

nix::EvalState * passiveState() noexcept { return measured; }

void begin(nix::EvalState & state) noexcept
{
    if (decided || !plugin_enabled()) return;
    decided = true;
    try {
        measured = &state; // the session's first reading is of this evaluator
        measuredPid = getpid();
        countersWereOn = compat::enableCounters(true);
        auto start = passive_begin(passiveSettingValues());
        if (!start.measured) {
            compat::enableCounters(countersWereOn);
            measured = nullptr;
            return;
        }
        if (start.stacks) passiveStacks = std::make_unique<StackProfiling>(state);
    } catch (...) {
        // passive_begin warned; Nix goes on unmeasured.
        compat::enableCounters(countersWereOn);
        measured = nullptr;
    }
}

// The evaluation is over (`state` null: whichever evaluator is measured).
void end(nix::EvalState * state) noexcept
{
    if (!measured || (state && state != measured) || getpid() != measuredPid) return;
    try {
        passiveStacks.reset();
        passive_end(compat::interrupted(), std::uncaught_exceptions() > 0);
    } catch (...) {
    }
    compat::enableCounters(countersWereOn);
    measured = nullptr;
}

// ---- the redirected functions ----------------------------------------------------------------

compat::EvalStateConstructor realConstructor = nullptr;
using MemberFn = void (*)(nix::EvalState *);
MemberFn realMaybePrintStats = nullptr;
MemberFn realDestructor = nullptr;

void constructed(nix::EvalState * self, const nix::LookupPath & lookupPath, nix::ref<nix::Store> store,
    const nix::fetchers::Settings & fetchSettings, const nix::EvalSettings & settings,
    std::shared_ptr<nix::Store> buildStore)
{
    realConstructor(self, lookupPath, std::move(store), fetchSettings, settings, std::move(buildStore));
    begin(*self);
}

void maybePrintStats(nix::EvalState * self)
{
    end(self);
    realMaybePrintStats(self);
}

void destroyed(nix::EvalState * self)
{
    end(self);
    realDestructor(self);
}

compat::LockFlake realLockFlake = nullptr;

// The first flake the measured evaluation locks is the report's flake.
nix::flake::LockedFlake lockFlake(const nix::flake::Settings & settings, nix::EvalState & state,
    const nix::FlakeRef & ref, const nix::flake::LockFlags & flags)
{
    auto locked = realLockFlake(settings, state, ref, flags);
    if (&state == measured && getpid() == measuredPid) {
        try {
            passive_flake(describeFlake(locked, ref.to_string()));
        } catch (...) {
        }
    }
    return locked;
}

using Execv = int (*)(const char *, char * const[]);
using Execve = int (*)(const char *, char * const[], char * const[]);
Execv realExecv = nullptr, realExecvp = nullptr;
Execve realExecve = nullptr;

int execvHook(const char * path, char * const argv[])
{
    end(nullptr);
    return realExecv(path, argv);
}
int execvpHook(const char * file, char * const argv[])
{
    end(nullptr);
    return realExecvp(file, argv);
}
int execveHook(const char * path, char * const argv[], char * const envp[])
{
    end(nullptr);
    return realExecve(path, argv, envp);
}

template<typename F>
bool redirect(const char * symbol, F replacement, F & real)
{
    real = reinterpret_cast<F>(got::redirect(symbol, reinterpret_cast<void *>(replacement)));
    return real != nullptr;
}

} // namespace

nix::EvalState * currentPassiveState() noexcept { return passiveState(); }

void register_passive_settings()
{
    auto & config = passiveConfig();
    if (!config.settings.empty()) return;
    for (auto & spec : passive_setting_specs())
        config.settings.push_back(std::make_unique<nix::Setting<std::string>>(
            &config, std::string(spec.default_value), std::string(spec.name), std::string(spec.description)));
    static nix::GlobalConfig::Register registration(&config);
}

rust::String install_passive_hooks() noexcept
{
    if (!redirect(compat::evalStateConstructorSymbol, &constructed, realConstructor))
        return rust::String(std::string("this Nix has no EvalState constructor named ") + compat::evalStateConstructorSymbol);
    // The end: the first three are optional (each covers commands the others miss).
    redirect("_ZN3nix9EvalState15maybePrintStatsEv", &maybePrintStats, realMaybePrintStats);
    redirect("_ZN3nix9EvalStateD1Ev", &destroyed, realDestructor);
    redirect(compat::lockFlakeSymbol, &lockFlake, realLockFlake);
    redirect("execv", &execvHook, realExecv);
    redirect("execvp", &execvpHook, realExecvp);
    redirect("execve", &execveHook, realExecve);
    return rust::String();
}

} // namespace evalcost
