# Nix packaging of nix-evalcost: the CLI in $out/bin; in $out/lib the loader
# (libnix_evalcost.so, what `plugin-files` names) and the plugin build for one Nix
# (libnix_evalcost_plugin.nix-<major>.<minor>.so). A plugin build must match the Nix that loads it,
# so there is one package per Nix version nixpkgs carries; `default` is built against nixpkgs'
# default `nix`.
#
# Verified here: the structure (tests/flake.rs evaluates every output against a small stand-in
# for nixpkgs). Not verified here: building with the real nixpkgs (these machines reach no
# nixpkgs or binary cache). See docs/development.md.
{
  description = "nix-evalcost: what evaluating each output of a Nix flake costs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;

      # The Nix releases cpp/compat.hh supports, by their nixpkgs attribute names. Those the
      # pinned nixpkgs lacks (or has only as a throwing alias) are left out.
      compatNix = [ "nix_2_26" "nix_2_28" "nix_2_29" "nix_2_30" "nix_2_31" "nix_2_32" "nix_2_33" "nix_2_34" "nix_2_35" ];
      availableNix = pkgs: lib.filter
        (name: pkgs.nixVersions ? ${name} && (builtins.tryEval pkgs.nixVersions.${name}.version).success)
        compatNix;

      # nix-evalcost built against `nix`.
      evalcostFor = pkgs: nix: pkgs.rustPlatform.buildRustPackage {
        pname = "nix-evalcost";
        inherit version;
        src = lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        nativeBuildInputs = [ pkgs.pkg-config ];
        buildInputs = [ nix pkgs.boehmgc ];
        # The tests that need no Nix store: the pure core and the CLI's. (The integration tests
        # run Nix with a writable store; they run in scripts/nix-env.)
        cargoTestFlags = [ "-p" "nix-evalcost-core" "-p" "nix-evalcost" ];
        # cargo's install hook puts both cdylibs in $out/lib, where the CLI looks (../lib); the
        # build is named for its Nix so that builds for several versions can sit side by side.
        postInstall = ''
          mv $out/lib/libnix_evalcost_plugin.so \
            $out/lib/libnix_evalcost_plugin.nix-${lib.versions.majorMinor nix.version}.so
        '';
        passthru.nix = nix;
        meta = {
          description = "Per-output evaluation cost of Nix flakes (CLI and plugin for Nix ${nix.version})";
          mainProgram = "nix-evalcost";
          license = lib.licenses.mit;
          platforms = lib.platforms.linux;
        };
      };

      # The pure core needs no Nix: its tests alone, as a check.
      coreTests = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "nix-evalcost-core-tests";
        inherit version;
        src = lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "-p" "nix-evalcost-core" ];
        cargoTestFlags = [ "-p" "nix-evalcost-core" ];
        installPhase = "touch $out";
      };
    in
    {
      packages = forAllSystems (pkgs:
        lib.listToAttrs (map (name: { name = "nix-evalcost-${name}"; value = evalcostFor pkgs pkgs.nixVersions.${name}; }) (availableNix pkgs))
        // { default = evalcostFor pkgs pkgs.nix; });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/nix-evalcost";
        };
      });

      overlays.default = final: prev: {
        nix-evalcost = evalcostFor final final.nix;
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.default ];
          packages = [ pkgs.clippy pkgs.rustfmt ];
        };
      });

      checks = forAllSystems (pkgs: {
        core = coreTests pkgs;
        package = self.packages.${pkgs.system}.default;
      });

      # programs.nix-evalcost.enable = true; adds the loader to nix.settings.plugin-files, with a
      # plugin build for the system's Nix (config.nix.package).
      nixosModules.default = { config, lib, pkgs, ... }:
        let cfg = config.programs.nix-evalcost; in
        {
          options.programs.nix-evalcost = {
            enable = lib.mkEnableOption "nix-evalcost, per-output evaluation cost of flakes (plugin and CLI)";
            package = lib.mkOption {
              type = lib.types.package;
              default = evalcostFor pkgs config.nix.package;
              defaultText = lib.literalExpression "nix-evalcost built against config.nix.package";
              description = "nix-evalcost, built against the Nix that will load its plugin.";
            };
          };
          config = lib.mkIf cfg.enable {
            environment.systemPackages = [ cfg.package ];
            nix.settings.plugin-files = [ "${cfg.package}/lib/libnix_evalcost.so" ];
          };
        };
    };
}
