//! The cash-flow page's figures, measured in Chromium through the Performance API (not a timed
//! test): the bytes a cold load transfers, and the time from navigation to the month's chart
//! drawn (the page's `chart-drawn` mark), with the platform up and during a consolidation outage.
//!
//! `cargo run -p acceptance --example page_figures [-- RELOADS]` (default 15 reloads per case).
//! It runs the platform in-process (debug build) against the harness's dependencies, the page
//! behind the harness's nginx gateway, and prints a Markdown table; the numbers also go to
//! `target/page/figures.json`.

use std::time::Duration;

use acceptance::browser::{Browser, output_dir};
use acceptance::page::ServedPage;
use serde_json::{Value, json};
use testkit::{Placement, System};

/// Entries recorded per day of the month so far, so that the chart has something to draw.
const ENTRIES_PER_DAY: u32 = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let reloads: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(15);
    let stack = harness::shared().await?;
    let mut system = System::start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await?;
    let served =
        ServedPage::start(&system, Duration::from_secs(600), Duration::from_secs(10)).await?;
    let merchant = "figures";
    seed(&system, merchant).await?;
    system
        .wait_consistent(&[merchant.to_string()], Duration::from_secs(120))
        .await?;

    let browser = Browser::start("pt-BR").await?;
    let result = measure(&browser, &served, &mut system, merchant, reloads).await;
    browser.close().await;
    served.stop().await;
    system.stop().await?;
    let figures = result?;
    std::fs::create_dir_all(output_dir())?;
    std::fs::write(
        output_dir().join("figures.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("{}", table(&figures));
    Ok(())
}

/// Credits and debits on every day of the month up to today.
async fn seed(system: &System, merchant: &str) -> anyhow::Result<()> {
    let token = system.full_token(merchant)?;
    let today = ledger::entries::today(&ledger::config::EntryRules::default())?;
    for day in 1..=today.day() {
        let date = today.replace_day(day)?;
        for n in 0..ENTRIES_PER_DAY {
            let (kind, amount) = if n % 2 == 0 {
                (
                    "credit",
                    format!("{}.{:02}", 100 + u32::from(day) * 7, n * 11),
                )
            } else {
                (
                    "debit",
                    format!("{}.{:02}", 40 + u32::from(day) * 3, n * 13),
                )
            };
            let (status, body) = system
                .record(
                    merchant,
                    &token,
                    &json!({"kind": kind, "amount": amount, "currency": "BRL",
                            "business_date": cashflow_contracts::business_date::format(date),
                            "description": "figures"}),
                )
                .await?;
            anyhow::ensure!(status == 201, "seeding: {status} {body}");
        }
    }
    Ok(())
}

/// What the Performance API says of the current page load: bytes transferred (navigation and
/// every resource), and when the chart was first drawn (ms after navigation start).
const PERFORMANCE: &str = "
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  const chart = performance.getEntriesByName('chart-drawn')[0];
  const api = resources.filter(r => new URL(r.name).pathname.startsWith('/v1/'));
  const sum = (list, key) => list.reduce((t, r) => t + (r[key] || 0), 0);
  return {
    transferred: nav.transferSize + sum(resources, 'transferSize'),
    decoded: nav.decodedBodySize + sum(resources, 'decodedBodySize'),
    api_transferred: sum(api, 'transferSize'),
    requests: 1 + resources.length,
    chart_ms: chart ? chart.startTime : null,
  };";

async fn measure(
    browser: &Browser,
    served: &ServedPage,
    system: &mut System,
    merchant: &str,
    reloads: usize,
) -> anyhow::Result<Value> {
    // A cold load: a fresh profile, nothing cached, the signed-out view (every module, the
    // stylesheet and the configuration).
    browser.goto(&served.url()).await?;
    browser.element("#sign-in").await?;
    let cold = browser.script(PERFORMANCE).await?;

    browser.click("#sign-in").await?;
    browser.fill("#username", "figures").await?;
    browser.fill("#merchants", merchant).await?;
    browser.click("#sign-in").await?;
    browser.element("#month-chart").await?;
    let first = chart_load(browser).await?;

    let mut up = Vec::new();
    for _ in 0..reloads {
        browser.reload().await?;
        up.push(chart_load(browser).await?);
    }
    system.stop_consolidation().await?;
    let mut outage = Vec::new();
    for _ in 0..reloads {
        browser.reload().await?;
        browser.element("#consolidation-down").await?;
        outage.push(chart_load(browser).await?);
    }
    system.start_consolidation().await?;
    Ok(json!({
        "cold_load": cold,
        "first_load_signed_in": first,
        "reloads": reloads,
        "chart_ms_up": summary(&up),
        "chart_ms_outage": summary(&outage),
        "reload_transferred_up": up.first().map(|m| m["transferred"].clone()),
        "entries": ENTRIES_PER_DAY,
    }))
}

/// Waits for the chart of this load, then reads the Performance API.
async fn chart_load(browser: &Browser) -> anyhow::Result<Value> {
    browser
        .wait("the chart-drawn mark", Duration::from_secs(30), || async {
            let measured = browser.script(PERFORMANCE).await?;
            Ok(measured["chart_ms"].is_number().then_some(measured))
        })
        .await
}

fn summary(loads: &[Value]) -> Value {
    let mut ms: Vec<f64> = loads
        .iter()
        .filter_map(|l| l["chart_ms"].as_f64())
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": ms.len(), "min": at(0.0), "median": at(0.5), "p95": at(0.95), "max": at(1.0)})
}

fn table(f: &Value) -> String {
    let kb = |v: &Value| format!("{:.1} KB", v.as_f64().unwrap_or(0.0) / 1000.0);
    let ms = |v: &Value| {
        format!(
            "median {:.0} ms, p95 {:.0} ms (min {:.0}, max {:.0}, n {})",
            v["median"].as_f64().unwrap_or(0.0),
            v["p95"].as_f64().unwrap_or(0.0),
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0),
            v["n"]
        )
    };
    format!(
        "| figure | value |\n| --- | --- |\n\
         | cold load, bytes transferred (gzip) | {} in {} requests ({} decoded) |\n\
         | first load after sign-in, navigation to chart | {:.0} ms |\n\
         | reload, navigation to chart drawn | {} |\n\
         | reload during a consolidation outage, navigation to chart drawn (kept balances) | {} |\n\
         | a reload's bytes (revalidated files, API answers) | {} |",
        kb(&f["cold_load"]["transferred"]),
        f["cold_load"]["requests"],
        kb(&f["cold_load"]["decoded"]),
        f["first_load_signed_in"]["chart_ms"]
            .as_f64()
            .unwrap_or(0.0),
        ms(&f["chart_ms_up"]),
        ms(&f["chart_ms_outage"]),
        kb(&f["reload_transferred_up"]),
    )
}
