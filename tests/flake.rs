//! flake.nix, evaluated by the real `nix` against a small stand-in for nixpkgs
//! (tests/flake-stub): a typo or a missing output cannot land. Nothing is built (these machines
//! have no nixpkgs); docs/development.md says what is and is not verified.

mod common;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The repository's flake files in a temporary directory (the repository itself holds
/// gigabytes of build output that a `path:` flake would copy into the store).
fn flake_copy() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for file in ["flake.nix", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn stub() -> String {
    format!("path:{}", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flake-stub").display())
}

/// `nix eval --json FLAKE#ATTR [--apply F]` with nixpkgs replaced by the stand-in (impure: the
/// applied functions fetch the stand-in with builtins.getFlake).
fn eval(flake: &Path, attr: &str, apply: Option<&str>) -> Value {
    let mut command = Command::new("nix");
    command
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--impure", "--json", "--override-input", "nixpkgs"])
        .arg(stub())
        .arg(format!("path:{}#{attr}", flake.display()));
    if let Some(f) = apply {
        command.args(["--apply", f]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{attr}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[test]
fn flake_check_evaluates_every_output() {
    let flake = flake_copy();
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes", "flake", "check", "--no-build", "--all-systems", "--override-input", "nixpkgs"])
        .arg(stub())
        .arg(format!("path:{}", flake.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn one_package_per_nix_version_and_a_default() {
    let flake = flake_copy();
    let p = flake.path();
    // nixpkgs' nix_2_28 is a throwing alias in the stand-in: left out, not an error.
    let packages = eval(p, "packages.x86_64-linux", Some("builtins.attrNames"));
    assert_eq!(names(&packages), ["default", "nix-evalcost-nix_2_26", "nix-evalcost-nix_2_35"]);
    let nix_version = eval(p, "packages.x86_64-linux.nix-evalcost-nix_2_35.nixVersion", None);
    assert_eq!(nix_version, "2.35.2");
    // The plugin build is named for its Nix, beside the loader.
    let post_install = eval(p, "packages.x86_64-linux.nix-evalcost-nix_2_35.postInstall", None);
    assert!(post_install.as_str().unwrap().contains("libnix_evalcost_plugin.nix-2.35.so"), "{post_install}");
    assert_eq!(eval(p, "packages.x86_64-linux.default.nixVersion", None), "2.26.3", "default: nixpkgs' nix");
    assert_eq!(eval(p, "packages.aarch64-linux.default.mainProgram", None), "nix-evalcost");
    // Tests that need no Nix store run in the build.
    let flags = eval(p, "packages.x86_64-linux.default.cargoTestFlags", None);
    assert_eq!(names(&flags), ["-p", "nix-evalcost-core", "-p", "nix-evalcost"]);
}

#[test]
fn app_overlay_devshell_and_checks() {
    let flake = flake_copy();
    let p = flake.path();
    let app = eval(p, "apps.x86_64-linux.default", None);
    assert_eq!(app["type"], "app");
    let program = app["program"].as_str().unwrap();
    assert!(program.starts_with("/nix/store/") && program.ends_with("-nix-evalcost-0.1.0/bin/nix-evalcost"), "{program}");
    assert_eq!(names(&eval(p, "checks.x86_64-linux", Some("builtins.attrNames"))), ["core", "package"]);
    assert_eq!(names(&eval(p, "checks.x86_64-linux.core.cargoTestFlags", None)), ["-p", "nix-evalcost-core"]);
    assert_eq!(names(&eval(p, "devShells.x86_64-linux.default.inputsFrom", None)), ["nix-evalcost-0.1.0"]);
    let overlaid = eval(
        p,
        "overlays.default",
        Some(&format!(
            "overlay: let pkgs = (builtins.getFlake \"{}\").legacyPackages.x86_64-linux; in (overlay pkgs pkgs).nix-evalcost.name",
            stub()
        )),
    );
    assert_eq!(overlaid, "nix-evalcost-0.1.0");
}

#[test]
fn the_nixos_module_adds_the_loader_to_plugin_files() {
    let flake = flake_copy();
    // The module called as the module system would, with the stand-in's lib.
    let apply = format!(
        "module: let
           stub = builtins.getFlake \"{}\";
           pkgs = stub.legacyPackages.x86_64-linux;
           config = {{ programs.nix-evalcost.enable = true; programs.nix-evalcost.package = {{ outPath = \"/nix/store/x-nix-evalcost\"; }}; nix.package = pkgs.nixVersions.nix_2_35; }};
           m = module {{ inherit config pkgs; lib = stub.lib; }};
         in {{
           options = builtins.attrNames m.options.programs.nix-evalcost;
           enableDefault = m.options.programs.nix-evalcost.enable.default;
           packageDefaultNix = m.options.programs.nix-evalcost.package.default.nixVersion;
           condition = m.config.condition;
           pluginFiles = m.config.content.nix.settings.plugin-files;
           systemPackages = map toString m.config.content.environment.systemPackages;
         }}",
        stub()
    );
    let module = eval(flake.path(), "nixosModules.default", Some(&apply));
    assert_eq!(names(&module["options"]), ["enable", "package"]);
    assert_eq!(module["enableDefault"], false);
    assert_eq!(module["packageDefaultNix"], "2.35.2", "the default package is built for config.nix.package");
    assert_eq!(module["condition"], true);
    assert_eq!(names(&module["pluginFiles"]), ["/nix/store/x-nix-evalcost/lib/libnix_evalcost.so"]);
    assert_eq!(names(&module["systemPackages"]), ["/nix/store/x-nix-evalcost"]);
}
