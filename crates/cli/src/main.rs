fn main() {
    std::process::exit(nix_evalcost_cli::main());
}
