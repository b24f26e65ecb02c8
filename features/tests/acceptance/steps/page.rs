//! Step definitions of `page.feature`: the cash-flow page in Debian's Chromium over WebDriver,
//! one browser session for the whole scenario.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

use acceptance::browser::{Browser, WAIT, output_dir};
use acceptance::page::ServedPage;
use anyhow::Context as _;
use harness::netfault::NetFault;

/// Lifetime of the page's access tokens here: short, so that the scenario sees them refreshed.
const ACCESS_TTL: Duration = Duration::from_secs(20);
/// The page's deadline for one API call here; the lost answer is late by more than that.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The browser, the page it shows and what the scenario needs to check it.
#[derive(Debug)]
pub(crate) struct PageSession {
    pub(crate) browser: Browser,
    pub(crate) served: ServedPage,
    /// Refresh grants the provider had answered before the scenario signed in.
    refreshes_before: u64,
    /// The session the page kept before logging out (its refresh token must be dead after).
    kept_session: Option<Value>,
}

impl PageSession {
    pub(crate) async fn close(self) {
        self.browser.close().await;
        self.served.stop().await;
    }
}

fn page(w: &Platform) -> &PageSession {
    w.page
        .as_ref()
        .expect("the page is served (a Given step serves it)")
}

/// Runs a step's checks; on failure, saves the screenshot and console log and fails with them.
async fn check<T>(w: &Platform, step: &str, result: anyhow::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => {
            let saved = page(w).browser.evidence(step).await;
            panic!("{step}: {e:#}\n(saved: {saved})");
        }
    }
}

/// Text without the no-break spaces Intl puts in money.
fn plain(text: &str) -> String {
    text.replace(['\u{a0}', '\u{202f}'], " ")
}

#[given("the page is served in front of it")]
pub(crate) async fn page_served(w: &mut Platform) {
    let served = ServedPage::start(w.system(), ACCESS_TTL, REQUEST_TIMEOUT)
        .await
        .expect("the gateway serves the page");
    let browser = Browser::start("pt-BR").await.expect("Chromium starts");
    let refreshes_before = w
        .system()
        .placement()
        .ledger
        .identity()
        .login_counts()
        .refreshed;
    w.page = Some(PageSession {
        browser,
        served,
        refreshes_before,
        kept_session: None,
    });
}

#[when(expr = "merchant {string} signs in on the page through the identity provider's form")]
pub(crate) async fn signs_in(w: &mut Platform, merchant: String) {
    w.merchant = merchant.clone();
    let p = page(w);
    let result = async {
        p.browser.goto(&p.served.url()).await?;
        p.browser.click("#sign-in").await?;
        // The identity provider's own form, same-origin under /identity/.
        p.browser.fill("#username", "ana").await?;
        p.browser.fill("#merchants", &merchant).await?;
        p.browser.click("#sign-in").await?;
        p.browser.element("#entry-form").await?;
        let user = p.browser.text("#user").await?.unwrap_or_default();
        anyhow::ensure!(user.contains("ana"), "signed in as {user:?}");
        Ok(())
    }
    .await;
    check(w, "sign in", result).await;
}

/// Fills the form and sends it; waits for the page to say it was recorded.
async fn record_on_page(p: &PageSession, kind: &str, amount: &str) -> anyhow::Result<()> {
    p.browser.click(&format!("#kind-{kind}")).await?;
    p.browser.fill("#amount", amount).await?;
    p.browser.click("#record-entry").await?;
    p.browser
        .wait(
            &format!("the {kind} of {amount} to be recorded"),
            WAIT,
            || async {
                let alert = p.browser.text("#form-alert").await?.unwrap_or_default();
                anyhow::ensure!(alert.is_empty(), "the page says: {alert}");
                let status = p.browser.text("#form-status").await?.unwrap_or_default();
                Ok(plain(&status)
                    .contains(&plain(amount).replace('.', ","))
                    .then_some(()))
            },
        )
        .await
}

#[when(expr = "records on the page a credit of {string} and a debit of {string}")]
pub(crate) async fn records_credit_and_debit(w: &mut Platform, credit: String, debit: String) {
    let p = page(w);
    let result = async {
        record_on_page(p, "credit", &credit).await?;
        record_on_page(p, "debit", &debit).await
    }
    .await;
    check(w, "record a credit and a debit", result).await;
}

#[when(expr = "the merchant records on the page a credit of {string}")]
pub(crate) async fn records_credit(w: &mut Platform, credit: String) {
    let result = record_on_page(page(w), "credit", &credit).await;
    check(w, "record a credit", result).await;
}

#[when(
    expr = "the merchant reloads the page and records a credit of {string} with the keyboard alone"
)]
pub(crate) async fn records_with_keyboard(w: &mut Platform, amount: String) {
    use fantoccini::key::Key;
    let p = page(w);
    let route = format!(
        "{}#/{}/{}",
        p.served.url(),
        w.merchant,
        &format(today())[..7]
    );
    let result = async {
        p.browser.goto(&route).await?;
        p.browser.reload().await?;
        p.browser.element("#entry-form").await?;
        // From the top: the skip link, into the main content, the kind, the amount, Enter.
        let mut path = Vec::new();
        for key in [Key::Tab, Key::Enter, Key::Tab, Key::Tab] {
            p.browser.press(&[key.into()]).await?;
            path.push(p.browser.focused().await?);
        }
        anyhow::ensure!(
            path == ["skip-link", "main", "kind-credit", "amount"],
            "the focus went {path:?}"
        );
        let typed: Vec<char> = amount.chars().chain([char::from(Key::Enter)]).collect();
        p.browser.press(&typed).await?;
        p.browser
            .wait("the entry recorded from the keyboard", WAIT, || async {
                let status = p.browser.text("#form-status").await?.unwrap_or_default();
                Ok(plain(&status)
                    .contains(&amount.replace('.', ","))
                    .then_some(()))
            })
            .await
    }
    .await;
    check(w, "record with the keyboard", result).await;
}

async fn closing_balance(p: &PageSession, amount: &str) -> anyhow::Result<()> {
    p.browser
        .wait_attribute("#closing-balance", "data-amount", amount)
        .await
}

#[then(expr = "the page's month shows a closing balance of {string} and today's bars")]
pub(crate) async fn month_and_bars(w: &mut Platform, closing: String) {
    let p = page(w);
    let today = format(today());
    let result = async {
        closing_balance(p, &closing).await?;
        for kind in ["credit", "debit"] {
            let css = format!("#month-chart rect.bar.{kind}.today[data-date=\"{today}\"]");
            let height: f64 = p
                .browser
                .attribute(&css, "height")
                .await?
                .with_context(|| format!("no {css}"))?
                .parse()?;
            anyhow::ensure!(height > 0.0, "today's {kind} bar has height {height}");
        }
        // The table says the same as the chart.
        let row = format!("#month-table tr[data-date=\"{today}\"]");
        p.browser.element(&row).await?;
        Ok(())
    }
    .await;
    check(w, "the month view", result).await;
}

#[then(expr = "the page's month shows a closing balance of {string}")]
pub(crate) async fn month_closing(w: &mut Platform, closing: String) {
    let result = closing_balance(page(w), &closing).await;
    check(w, "the closing balance", result).await;
}

#[then("the page shows money and dates in Portuguese and in English")]
pub(crate) async fn languages(w: &mut Platform) {
    let p = page(w);
    let month = today().month();
    let result = async {
        let closing = p
            .browser
            .text("#closing-balance")
            .await?
            .unwrap_or_default();
        anyhow::ensure!(plain(&closing) == "R$ 100,50", "pt-BR money: {closing:?}");
        let caption = p
            .browser
            .text("#month-table caption")
            .await?
            .unwrap_or_default();
        let portuguese = [
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ][usize::from(u8::from(month)) - 1];
        anyhow::ensure!(caption.contains(portuguese), "pt-BR date: {caption:?}");
        p.browser
            .element("#language")
            .await?
            .select_by_value("en")
            .await?;
        p.browser
            .wait("English money", WAIT, || async {
                let closing = p
                    .browser
                    .text("#closing-balance")
                    .await?
                    .unwrap_or_default();
                Ok((plain(&closing) == "BRL 100.50").then_some(()))
            })
            .await?;
        let caption = p
            .browser
            .text("#month-table caption")
            .await?
            .unwrap_or_default();
        anyhow::ensure!(caption.contains(&month.to_string()), "en date: {caption:?}");
        let lang = p.browser.attribute("html", "lang").await?;
        anyhow::ensure!(lang.as_deref() == Some("en"), "html lang {lang:?}");
        // The README's picture of the month view (docs/page-month.png), the window tall
        // enough for the whole section.
        p.browser.client().set_window_size(1280, 1900).await?;
        let png = p.browser.element("#month").await?.screenshot().await;
        p.browser.client().set_window_size(1280, 1000).await?;
        std::fs::create_dir_all(output_dir())?;
        std::fs::write(output_dir().join("month.png"), png?)?;
        p.browser
            .element("#language")
            .await?
            .select_by_value("pt-BR")
            .await?;
        p.browser
            .wait("Portuguese again", WAIT, || async {
                let lang = p.browser.attribute("html", "lang").await?;
                Ok((lang.as_deref() == Some("pt-BR")).then_some(()))
            })
            .await
    }
    .await;
    check(w, "languages", result).await;
}

#[then("the page has no serious accessibility violations")]
pub(crate) async fn accessible(w: &mut Platform) {
    let result = async {
        let violations = page(w).browser.axe().await?;
        anyhow::ensure!(
            violations.is_empty(),
            "axe-core found serious violations: {violations:#?}"
        );
        Ok(())
    }
    .await;
    check(w, "accessibility", result).await;
}

#[then("the page says the consolidation is unavailable and entries are still accepted")]
pub(crate) async fn consolidation_banner(w: &mut Platform) {
    let p = page(w);
    let result = async {
        let banner = p.browser.element("#consolidation-down").await?;
        let text = banner.text().await?;
        anyhow::ensure!(
            text.contains("continuam sendo aceitos"),
            "the banner says: {text:?}"
        );
        Ok(())
    }
    .await;
    check(w, "the consolidation banner", result).await;
}

#[then(regex = r"^the page counts (\d+) entr(?:y|ies) not in the balance yet$")]
pub(crate) async fn pending(w: &mut Platform, count: u32) {
    let result = page(w)
        .browser
        .wait_attribute("#pending", "data-count", &count.to_string())
        .await;
    check(w, "the pending count", result).await;
}

#[then(
    regex = r#"^the page counts 0 entries not in the balance yet and a closing balance of "([^"]*)"$"#
)]
pub(crate) async fn caught_up(w: &mut Platform, closing: String) {
    let p = page(w);
    let result = async {
        p.browser
            .wait_attribute("#pending", "data-count", "0")
            .await?;
        closing_balance(p, &closing).await?;
        anyhow::ensure!(
            !p.browser.has("#consolidation-down").await,
            "the banner is still shown"
        );
        Ok(())
    }
    .await;
    check(w, "the balance caught up", result).await;
}

#[when(
    expr = "the ledger's answer to an entry of {string} is lost and the merchant sends it again"
)]
pub(crate) async fn answer_lost(w: &mut Platform, amount: String) {
    let p = page(w);
    let result = async {
        // Late by more than the page waits: the ledger records it, the page never hears so.
        p.served.ledger_link.inject(NetFault::Latency {
            latency: REQUEST_TIMEOUT + Duration::from_secs(2),
            jitter: Duration::ZERO,
        });
        p.browser.click("#kind-credit").await?;
        p.browser.fill("#amount", &amount).await?;
        p.browser.fill("#description", "lost answer").await?;
        p.browser.click("#record-entry").await?;
        let said = p
            .browser
            .wait("the page to say it had no answer", WAIT, || async {
                let alert = p.browser.text("#form-alert").await?.unwrap_or_default();
                Ok((!alert.is_empty()).then_some(alert))
            })
            .await;
        p.served.ledger_link.inject(NetFault::Heal);
        let said = said?;
        anyhow::ensure!(said.contains("duas vezes"), "the page says: {said:?}");
        // The same form, sent again as it is.
        p.browser.click("#record-entry").await?;
        p.browser
            .wait("the entry to be recorded", WAIT, || async {
                let status = p.browser.text("#form-status").await?.unwrap_or_default();
                Ok((!status.is_empty()).then_some(()))
            })
            .await
    }
    .await;
    check(w, "a lost answer", result).await;
}

/// Today's entries of `amount` in the ledger, read through its API.
async fn ledger_entries_of(w: &Platform, amount: &str) -> anyhow::Result<Vec<Value>> {
    let system = w.system();
    let response = system
        .http()
        .get(format!(
            "{}/v1/merchants/{}/entries?date={}&limit=200",
            system.ledger_url(),
            w.merchant,
            format(today())
        ))
        .bearer_auth(w.token())
        .send()
        .await?;
    let body: Value = response.json().await?;
    Ok(body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["amount"] == amount && e["reverses_entry_id"].is_null())
        .collect())
}

#[then(expr = "the ledger recorded the entry of {string} once")]
pub(crate) async fn recorded_once(w: &mut Platform, amount: String) {
    let result = async {
        let entries = ledger_entries_of(w, &amount).await?;
        anyhow::ensure!(
            entries.len() == 1,
            "the ledger holds {} entries of {amount}: the retry was recorded again",
            entries.len()
        );
        Ok(())
    }
    .await;
    check(w, "recorded once", result).await;
}

#[when(expr = "the merchant reverses the entry of {string} on the page")]
pub(crate) async fn reverses(w: &mut Platform, amount: String) {
    let result = async {
        let entry = ledger_entries_of(w, &amount)
            .await?
            .pop()
            .context("the entry")?;
        let id = entry["id"].as_str().context("an id")?.to_string();
        let p = page(w);
        let button = format!("button.reverse[data-entry=\"{id}\"]");
        // Its row may be on a later page of today's entries.
        while !p.browser.has(&button).await && p.browser.has("#entries-next:enabled").await {
            p.browser.click("#entries-next").await?;
        }
        p.browser.click(&button).await?;
        p.browser.click("#confirm-reverse").await?;
        p.browser
            .wait("the reversal", WAIT, || async {
                let status = p.browser.text("#today-status").await?.unwrap_or_default();
                Ok((!status.is_empty()).then_some(()))
            })
            .await
    }
    .await;
    check(w, "reverse an entry", result).await;
}

#[when(expr = "the merchant opens the page of merchant {string}")]
pub(crate) async fn opens_other(w: &mut Platform, merchant: String) {
    let p = page(w);
    let month = &format(today())[..7];
    let result = p
        .browser
        .goto(&format!("{}#/{merchant}/{month}", p.served.url()))
        .await;
    check(w, "open another merchant's page", result).await;
}

#[then("the page answers 403")]
pub(crate) async fn forbidden(w: &mut Platform) {
    let p = page(w);
    let result = async {
        let heading = p.browser.element("#forbidden-title").await?.text().await?;
        anyhow::ensure!(heading.contains("403"), "{heading:?}");
        anyhow::ensure!(
            !p.browser.has("#entry-form").await,
            "the books are still shown"
        );
        Ok(())
    }
    .await;
    check(w, "the 403 page", result).await;
}

#[when("the merchant reloads the page")]
pub(crate) async fn reloads(w: &mut Platform) {
    let p = page(w);
    let result = async {
        p.browser
            .goto(&format!(
                "{}#/{}/{}",
                p.served.url(),
                w.merchant,
                &format(today())[..7]
            ))
            .await?;
        p.browser.reload().await
    }
    .await;
    check(w, "reload", result).await;
}

#[then("the merchant is still signed in, and the page refreshed its token before it expired")]
pub(crate) async fn still_signed_in(w: &mut Platform) {
    let p = page(w);
    let identity = w.system().placement().ledger.identity();
    let result = async {
        p.browser.element("#entry-form").await?;
        anyhow::ensure!(!p.browser.has("#sign-in").await, "asked to sign in again");
        // Tokens live 20 s: a session this long has been refreshed (by the page's timer).
        p.browser
            .wait("a refresh grant", Duration::from_secs(30), || async {
                Ok((identity.login_counts().refreshed > p.refreshes_before).then_some(()))
            })
            .await?;
        // And the page still reads the books with its refreshed token.
        closing_balance(p, "115.50").await
    }
    .await;
    check(w, "still signed in", result).await;
}

#[when("the merchant logs out on the page")]
pub(crate) async fn logs_out(w: &mut Platform) {
    let kept = {
        let p = page(w);
        let result = async {
            let kept = p
                .browser
                .script("return sessionStorage.getItem('cashflow.session');")
                .await?;
            p.browser.click("#sign-out").await?;
            Ok(kept)
        }
        .await;
        check(w, "log out", result).await
    };
    w.page.as_mut().expect("the page").kept_session = kept
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok());
}

#[then("the page asks to sign in again and the old session is over")]
pub(crate) async fn signed_out(w: &mut Platform) {
    let p = page(w);
    let result = async {
        p.browser.element("#sign-in").await?;
        p.browser.element("#notice").await?;
        let kept = p
            .browser
            .script("return sessionStorage.getItem('cashflow.session');")
            .await?;
        anyhow::ensure!(kept.is_null(), "tokens left in sessionStorage: {kept}");
        // The provider ended the session: its refresh token no longer works.
        let refresh = p
            .kept_session
            .as_ref()
            .and_then(|s| s["refreshToken"].as_str())
            .context("the session the page kept")?;
        let answer = w
            .system()
            .http()
            .post(format!("{}/identity/oauth2/token", p.served.base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&client_id={}&refresh_token={refresh}",
                p.served.client_id
            ))
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().as_u16() == 400,
            "the old refresh token still works: {}",
            answer.status()
        );
        // No CSP violation and no uncaught error all along.
        let console = p.browser.console().await?;
        let bad: Vec<_> = console
            .iter()
            .filter(|(_, m)| m.contains("Content Security Policy") || m.contains("Uncaught"))
            .collect();
        anyhow::ensure!(bad.is_empty(), "the console says: {bad:#?}");
        Ok(())
    }
    .await;
    check(w, "signed out", result).await;
}
