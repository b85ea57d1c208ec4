# Nix packaging of nix-evalcost: the CLI in $out/bin and the plugin in $out/lib, built against
# the Nix it will be loaded into (the plugin must match that Nix's minor version).
#
# Not built in this project's CI: its machines reach no Nix binary cache (see
# docs/development.md); scripts/nix-env is the tested way to build.
{
  description = "nix-evalcost: what evaluating each output of a Nix flake costs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      build = pkgs: nix: pkgs.rustPlatform.buildRustPackage {
        pname = "nix-evalcost";
        version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;
        src = ./.;
        cargoLock.lockFile = ./Cargo.lock;
        nativeBuildInputs = [ pkgs.pkg-config ];
        buildInputs = [ nix pkgs.boehmgc ];
        # The integration tests run Nix with a writable store; they run in scripts/nix-env.
        doCheck = false;
        # cargo's install hook puts the cdylib in $out/lib, where the CLI looks (../lib).
        meta.mainProgram = "nix-evalcost";
      };
    in
      # The pure core needs no Nix: its tests run in the sandbox.
      coreTests = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "nix-evalcost-core-tests";
        version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;
        src = ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "-p" "nix-evalcost-core" ];
        cargoTestFlags = [ "-p" "nix-evalcost-core" ];
        installPhase = "touch $out";
      };
    in
    {
      packages = forAllSystems (pkgs: {
        default = build pkgs pkgs.nixVersions.nix_2_26;
      });
      checks = forAllSystems (pkgs: {
        core = coreTests pkgs;
        package = self.packages.${pkgs.system}.default;
      });
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.default ];
          packages = [ pkgs.nixVersions.nix_2_26 pkgs.clippy pkgs.rustfmt ];
        };
      });
    };
}
