//! libnix_evalcost.so, the file users name in `plugin-files`: a loader with no link-time
//! dependency on Nix, so that it loads into every Nix. It asks the running Nix its version and
//! loads the plugin build made for it from its own directory
//! (`nix_evalcost_core::protocol::choose_plugin_build`). With no such build it prints one
//! warning and returns: Nix goes on, its output and exit status unchanged, without the builtins.
//!
//! A plugin build loaded into another Nix would make Nix abort every command ("could not
//! dynamically open plugin file"), which in nix.conf means a Nix upgrade breaks the user's Nix.

use nix_evalcost_core::guard::guarded;
use nix_evalcost_core::nix_version::NixVersion;
use nix_evalcost_core::protocol::{choose_plugin_build, LOADER_MARKER};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `nix::nixVersion`, a `std::string` in libnixstore (2.26 through 2.35 at least), which the
/// `nix` binary links: it is in the process's global scope.
const NIX_VERSION_SYMBOL: &CStr = c"_ZN3nix10nixVersionB5cxx11E";
/// What the loader says when the process has no `nix::` symbols (`nix-evalcost doctor` reads it).
const NO_NIX_SYMBOLS: &str = nix_evalcost_core::protocol::NO_NIX_SYMBOLS;

/// Tells the CLI this file is the loader, not a plugin build.
#[used]
#[no_mangle]
pub static NIX_EVALCOST_LOADER: [u8; LOADER_MARKER.len()] = nix_evalcost_core::protocol::marker(LOADER_MARKER, "");

/// Called by Nix right after it loads this file.
#[no_mangle]
pub extern "C" fn nix_plugin_entry() {
    if let Err(message) = guarded("loading the plugin", load) {
        eprintln!("warning: nix-evalcost: {message}");
    }
}

fn load() -> Result<(), String> {
    let running = running_nix_version()?;
    let dir = own_directory()?;
    let build = choose_plugin_build(&dir, &running)?;
    let entry = open(&build)?;
    // SAFETY: `entry` is the plugin build's `extern "C" fn nix_plugin_entry()`; the library
    // stays loaded for the life of the process (never dlclosed).
    unsafe { entry() };
    Ok(())
}

/// The version of the Nix this process is, read from `nix::nixVersion`.
fn running_nix_version() -> Result<NixVersion, String> {
    // SAFETY: dlsym with RTLD_DEFAULT only looks the symbol up.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, NIX_VERSION_SYMBOL.as_ptr()) };
    if symbol.is_null() {
        return Err(format!("{NO_NIX_SYMBOLS}; it cannot load plugins. Use a Nix built with shared libraries"));
    }
    // SAFETY: the symbol is a libstdc++ (C++11 ABI) std::string: its first two words are the
    // character pointer and the length. Nix initialises it before any plugin is loaded.
    let text = unsafe {
        let words = symbol as *const usize;
        let (data, len) = (*words as *const u8, *words.add(1));
        if data.is_null() || len > 256 {
            return Err("cannot read nix::nixVersion".into());
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(data, len)).into_owned()
    };
    NixVersion::parse(&text).ok_or_else(|| format!("cannot read Nix's version {text:?}"))
}

/// The directory this loader was loaded from.
fn own_directory() -> Result<PathBuf, String> {
    // SAFETY: dladdr fills `info` for an address inside a loaded object; a function of this
    // library is one.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::dladdr(nix_plugin_entry as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot find the loader's own file".into());
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic linker.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = Path::new(std::ffi::OsStr::from_bytes(file.to_bytes()));
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    Ok(path.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// dlopens `build` as Nix opens plugins and returns its entry point.
fn open(build: &Path) -> Result<unsafe extern "C" fn(), String> {
    let c_path = CString::new(build.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL in the path", build.display()))?;
    // SAFETY: plain dlopen/dlsym/dlerror calls; dlerror's string is copied at once.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(format!("cannot open {}: {}", build.display(), last_dl_error()));
        }
        let entry = libc::dlsym(handle, c"nix_plugin_entry".as_ptr());
        if entry.is_null() {
            return Err(format!("{} has no nix_plugin_entry; is it a nix-evalcost plugin build?", build.display()));
        }
        Ok(std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(entry))
    }
}

/// dlerror()'s message.
unsafe fn last_dl_error() -> String {
    let e = libc::dlerror();
    if e.is_null() {
        "unknown error".into()
    } else {
        CStr::from_ptr(e).to_string_lossy().into_owned()
    }
}
