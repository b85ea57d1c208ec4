# A small stand-in for nixpkgs, enough to evaluate this repository's flake.nix offline
# (tests/flake.rs): the lib functions it calls, and packages that are plain derivations
# recording the arguments they were given. It builds nothing.
{
  outputs = { self }:
    let
      lib = rec {
        genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
        filter = builtins.filter;
        listToAttrs = builtins.listToAttrs;
        versions.majorMinor = v: let p = builtins.splitVersion v; in "${builtins.elemAt p 0}.${builtins.elemAt p 1}";
        cleanSource = src: src;
        licenses.mit = { shortName = "mit"; };
        platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
        mkEnableOption = description: { _type = "option"; default = false; inherit description; };
        mkOption = args: args // { _type = "option"; };
        types.package = { name = "package"; };
        literalExpression = text: { _type = "literalExpression"; inherit text; };
        mkIf = condition: content: { _type = "if"; inherit condition content; };
      };
      # A derivation that records what it was asked to build, and can never be built.
      recorded = system: name: attrs: derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo stand-in package; exit 1" ];
      } // attrs);
      pkgsFor = system:
        let
          nixOf = version: { inherit version; name = "nix-${version}"; };
        in
        {
          inherit system;
          pkg-config = recorded system "pkg-config" { };
          boehmgc = recorded system "boehmgc" { };
          clippy = recorded system "clippy" { };
          rustfmt = recorded system "rustfmt" { };
          nix = nixOf "2.26.3";
          nixVersions = {
            nix_2_26 = nixOf "2.26.3";
            nix_2_28 = throw "nix_2_28 has been removed"; # as nixpkgs does with old versions
            nix_2_35 = nixOf "2.35.2";
          };
          rustPlatform.buildRustPackage = args:
            recorded system "${args.pname}-${args.version}" {
              postInstall = args.postInstall or "";
              installPhase = args.installPhase or "";
              cargoBuildFlags = args.cargoBuildFlags or [ ];
              cargoTestFlags = args.cargoTestFlags or [ ];
              cargoLockFile = builtins.baseNameOf (toString args.cargoLock.lockFile);
              mainProgram = args.meta.mainProgram or "";
              nixVersion = (args.passthru.nix or { version = ""; }).version;
            } // { passthru = args.passthru or { }; meta = args.meta or { }; };
          mkShell = args: recorded system "shell" { inputsFrom = map (d: d.name) (args.inputsFrom or [ ]); };
        };
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
    };
}
