//! The `rawgraph` binary: parses the command line and prints any error as
//! one line on stderr with a non-zero exit code.

use clap::Parser;

/// Frame-sized blocks on transparent huge pages (see `memory`).
#[global_allocator]
static ALLOC: rawgraph::memory::FrameAllocator = rawgraph::memory::FrameAllocator;

fn main() {
    rawgraph::memory::keep_freed_frames();
    let cli = rawgraph::cli::Cli::parse();
    match rawgraph::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
