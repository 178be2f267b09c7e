//! The `asa-lth` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Structured-sparsity kernels and the Lottery Ticket vs Atomic Semantic Attention
/// experiments.
#[derive(Parser, Debug)]
#[command(name = "asa-lth", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the devices found (or why none), whether CUDA kernels were built and for which
    /// architectures, and versions.
    Info {
        /// Also print per-device details and the build toolchain.
        #[arg(long)]
        verbose: bool,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info { verbose } => info(verbose),
    }
}

fn info(verbose: bool) -> Result<()> {
    let probe = asa_lth::backend::cuda::probe();
    println!("asa-lth {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {}", asa_lth::provenance::cpu_summary());
    println!("gpu: {}", probe.one_line_summary());
    if verbose {
        println!("{}", probe.details());
    }
    Ok(())
}
