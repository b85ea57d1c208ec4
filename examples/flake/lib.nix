# A small library of functions, exported as the flake's `lib` output.
rec {
  # Naive Fibonacci: fib n makes 2*F(n+1)-1 calls, a known, deterministic cost.
  fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);

  # Sieve-free prime test, allocation-heavy on purpose (builtins.genList).
  isPrime = n: n > 1 && builtins.all (d: n - (n / d) * d != 0) (builtins.genList (i: i + 2) (n - 2));
  primesBelow = limit: builtins.filter isPrime (builtins.genList (i: i) limit);

  # Attribute-set helpers of the kind every flake grows.
  forAllSystems = systems: f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
  mapNames = f: set: builtins.listToAttrs (map (name: { inherit name; value = f name set.${name}; }) (builtins.attrNames set));
}
