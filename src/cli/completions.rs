//! `rawgraph completions SHELL`: the shell completion script on stdout.
//!
//! Install with, for example,
//! `rawgraph completions bash > ~/.local/share/bash-completion/completions/rawgraph`
//! or `rawgraph completions zsh > "${fpath[1]}/_rawgraph"`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `a.shell` to stdout.
pub fn run(a: CompletionsArgs) -> Result<i32> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "rawgraph", &mut out);
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::invalid(format!("stdout: {e}")))?;
    Ok(0)
}
