//! Every parser of what a user types or a process prints: path globs (and matching), metric
//! names, gate rules, Nix versions, progress lines, the plugin marker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_evalcost_core::nix_version::NixVersion;
use nix_evalcost_core::pathglob::PathGlob;
use nix_evalcost_core::protocol::{built_for, ProgressLine};

fuzz_target!(|data: &[u8]| {
    let _ = built_for(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A glob, and the path it is matched against, separated by a newline.
    let (glob, path) = text.split_once('\n').unwrap_or((text, "packages.x86_64-linux.hello"));
    if let Ok(glob) = PathGlob::parse(glob) {
        let components: Vec<&str> = path.split('.').collect();
        let _ = glob.matches(&components);
    }
    let _ = nix_evalcost_core::metric::find(text);
    let _ = nix_evalcost_core::gate::Rule::parse(text);
    let _ = NixVersion::parse(text);
    let _ = nix_evalcost_core::nix_version::same_minor(text, "2.26.3");
    let _ = ProgressLine::parse(text);
});
