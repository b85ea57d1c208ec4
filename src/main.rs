fn main() {
    std::process::exit(nix_evalcost::cli::main());
}
