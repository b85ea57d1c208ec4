# The nix-evalcost example flake: the shape of a real project, with nothing to build.
# Derivations use builtins.derivation with a builder that never runs, so evaluating (and
# writing .drv files) needs neither the network nor a build.
{
  description = "nix-evalcost example flake";

  outputs = { self }:
    let
      lib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = lib.forAllSystems systems;

      mkPackage = system: name: attrs: derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo 'nix-evalcost examples are never built' >&2; exit 1" ];
      } // attrs);
    in
    {
      inherit lib;

      packages = forAllSystems (system: {
        hello = mkPackage system "hello" { };
        default = self.packages.${system}.hello;
        # Deliberately expensive: ~150 000 Nix function calls to compute one attribute.
        fib-table = mkPackage system "fib-table" { table = toString (map lib.fib [ 18 20 22 ]); };
        # Deliberately allocation-heavy.
        primes = mkPackage system "primes" { primes = toString (lib.primesBelow 600); };
        # Deliberately broken: the walk records the error and goes on.
        broken = mkPackage system "broken" { version = throw "packages.broken is broken on purpose"; };
      });

      checks = forAllSystems (system: {
        hello-runs = mkPackage system "hello-runs" { hello = self.packages.${system}.hello; };
        formatting = mkPackage system "formatting" { };
      });

      devShells = forAllSystems (system: {
        default = mkPackage system "dev-shell" { buildInputs = [ self.packages.${system}.hello ]; };
      });

      apps = forAllSystems (system: {
        hello = { type = "app"; program = "${self.packages.${system}.hello}/bin/hello"; };
      });

      formatter = forAllSystems (system: mkPackage system "formatter" { });

      legacyPackages = forAllSystems (system: {
        plain = mkPackage system "plain" { };
        # Walked: recurseForDerivations = true, at every level.
        tools = {
          recurseForDerivations = true;
          fmt = mkPackage system "fmt" { };
          lint = mkPackage system "lint" { };
          extra = {
            recurseForDerivations = true;
            profiler = mkPackage system "profiler" { };
          };
        };
        # Not walked: no recurseForDerivations, like most of nixpkgs' internal sets.
        internal = {
          helper = mkPackage system "helper" { };
        };
      });

      overlays.default = final: prev: { hello = self.packages.${prev.system}.hello; };

      nixosModules.default = { config, ... }: { };

      templates.default = { path = ./.; description = "the example itself"; };
    };
}
