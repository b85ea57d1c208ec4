// got.hh: redirecting the calls Nix's own libraries make to one of its functions.
//
// A call from one shared object to a function of another goes through a slot of the caller's
// global offset table (GOT), filled by the dynamic linker. Passive profiling needs two moments
// no plugin API offers (an evaluator is created, an evaluation is over), so it rewrites the
// slots that name those functions in Nix's own objects to point at a wrapper, which calls the
// real function. Nix's code is not modified and nothing is patched when passive profiling is off.
#pragma once

namespace evalcost::got {

// Rewrites, in the executable and every loaded `libnix*` object, each GOT slot bound to the
// dynamic symbol `symbol` so that it holds `replacement`. Returns the real function (resolved
// in the global scope), or nullptr if the process has no such symbol; then nothing is patched.
// `patched`, if given, receives how many slots now hold `replacement`.
// Not thread-safe: call it before Nix starts threads that could call the function.
void * redirect(const char * symbol, void * replacement, int * patched = nullptr) noexcept;

} // namespace evalcost::got
