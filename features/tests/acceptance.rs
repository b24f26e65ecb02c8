//! Step definitions for the Gherkin scenarios in `tests/features`, run by `cargo test` (a
//! `harness = false` target). Scenarios share one harness stack and run concurrently; those
//! tagged `@own-stack` or `@chaos` start stacks of their own because they kill things, and
//! `@serial` ones run alone. A JUnit report is written to `target/acceptance/junit.xml`.
//!
//! The shared world is in `acceptance/world.rs`, the step definitions in one module per feature
//! file under `acceptance/steps/`.

#[path = "acceptance/steps/mod.rs"]
mod steps;
#[path = "acceptance/world.rs"]
mod world;

use cucumber::{World as _, WriterExt, writer};

use world::Platform;

/// Under `cargo nextest run` the binary is asked libtest's questions: `--list --format terse`
/// (it answers with one test, the whole suite) and then to run it with `--exact`. Cucumber's own
/// options are for `cargo test -p acceptance -- <cucumber options>`.
fn nextest_protocol() -> Option<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("acceptance: test");
        }
        std::process::exit(0);
    }
    args.iter().any(|a| a == "--exact").then_some(true)
}

#[tokio::main]
async fn main() {
    let under_nextest = nextest_protocol().unwrap_or(false);
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features");
    let report_dir = harness::paths::target_dir().join("acceptance");
    std::fs::create_dir_all(&report_dir).expect("report folder");
    let junit = std::fs::File::create(report_dir.join("junit.xml")).expect("junit file");
    let cucumber = Platform::cucumber()
        .max_concurrent_scenarios(4)
        .after(|_feature, _rule, _scenario, _finished, world| {
            Box::pin(async move {
                if let Some(world) = world {
                    world.cleanup().await;
                }
            })
        })
        .with_writer(
            writer::Basic::raw(std::io::stdout(), writer::Coloring::Never, 0)
                .summarized()
                .tee::<Platform, _>(writer::JUnit::for_tee(junit, 0))
                .normalized(),
        )
        .fail_on_skipped();
    // Set last: changing the writer resets the options.
    let cucumber = if under_nextest {
        cucumber.with_default_cli()
    } else {
        cucumber
    };
    cucumber.run_and_exit(features).await;
}
