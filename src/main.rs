//! The `rawgraph` binary: parses the command line and prints any error as
//! one line on stderr with a non-zero exit code.

use clap::Parser;

/// Frame-sized blocks on transparent huge pages (see `memory`).
#[global_allocator]
static ALLOC: rawgraph::memory::FrameAllocator = rawgraph::memory::FrameAllocator;

fn main() {
    // Output piped into a reader that stops early (`rawgraph info F | head`)
    // ends the process quietly, as other command-line tools do, instead of
    // a panic on the failed write: SIGPIPE back to its default action
    // (Rust's runtime ignores it).
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
