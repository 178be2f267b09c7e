//! The `asa-lth` binary: everything lives in [`asa_lth::cli`].

fn main() {
    asa_lth::cli::main()
}
