//! `harness up` / `harness token`: see [`harness::cli`].

#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match harness::cli::Cli::parse().run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // What went wrong, outermost first, for a person. A backtrace only when
            // RUST_BACKTRACE (or RUST_LIB_BACKTRACE) asks for one, and before the message, so
            // that what to do is what the terminal shows last.
            if std::env::var_os("RUST_BACKTRACE").is_some()
                || std::env::var_os("RUST_LIB_BACKTRACE").is_some()
            {
                eprintln!("{}", e.backtrace());
            }
            eprintln!("harness: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("harness:   because: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
