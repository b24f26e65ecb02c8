//! A real browser for the cash-flow page's tests: Debian's Chromium, headless, driven over
//! WebDriver by Debian's `chromedriver` through fantoccini (`ci/install-deps.sh` installs both).
//!
//! Waiting is polling against a deadline ([`Browser::wait`]), never a sleep. On a failure the
//! test saves [`Browser::evidence`]: a screenshot and the browser's console log under
//! `target/page/`. [`Browser::axe`] runs axe-core in the page (its `axe.min.js` is fetched by
//! `ci/install-deps.sh` into `target/axe/`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use harness::process::{ProcessSpec, Supervised};
use serde_json::{Value, json};

/// How long one wait for the page lasts by default: the longest step is the consolidation
/// catching up after a restart.
pub const WAIT: Duration = Duration::from_secs(60);

/// A headless Chromium session and the chromedriver that drives it.
pub struct Browser {
    client: Client,
    driver: Supervised,
    driver_url: String,
    profile: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_url", &self.driver_url)
            .finish_non_exhaustive()
    }
}

/// Where the page tests put their screenshots, console logs and figures.
pub fn output_dir() -> PathBuf {
    harness::paths::target_dir().join("page")
}

/// axe-core's script, as `ci/install-deps.sh` fetched it.
pub fn axe_script_path() -> PathBuf {
    harness::paths::target_dir().join("axe").join("axe.min.js")
}

/// A serious or critical accessibility violation axe-core found.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The rule (`color-contrast`, `label`, ...).
    pub rule: String,
    /// `serious` or `critical`.
    pub impact: String,
    /// What it asks for.
    pub help: String,
    /// Where (CSS selectors of the offending elements).
    pub targets: Vec<String>,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium whose preferred language is
    /// `language` (`pt-BR`, `en`).
    pub async fn start(language: &str) -> anyhow::Result<Self> {
        let program = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context(
                "chromedriver is not installed (Debian's chromium-driver): bash ci/install-deps.sh",
            )?;
        let port = harness::backend::native::free_port()?;
        let log_file = harness::paths::logs_dir()
            .join(format!("chromedriver-{}-{port}.log", std::process::id()));
        let driver = Supervised::new(ProcessSpec {
            name: "chromedriver".into(),
            program,
            args: vec![format!("--port={port}")],
            env: Vec::new(),
            cwd: None,
            user: None,
            ready_line: "started successfully".into(),
            stop_signal: harness::process::Signal::TERM,
            log_file,
        });
        driver.start(Duration::from_secs(30)).await?;
        let driver_url = format!("http://127.0.0.1:{port}");
        let profile =
            std::env::temp_dir().join(format!("page-browser-{}", uuid::Uuid::new_v4().simple()));
        let mut options = json!({
            "args": [
                "--headless=new",
                // Root in CI and containers: Chromium's sandbox needs user namespaces it may not
                // have. The browser only ever opens our own page on 127.0.0.1.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,1000",
                format!("--lang={language}"),
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"intl.accept_languages": language},
        });
        if Path::new("/usr/bin/chromium").is_file() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .context("starting Chromium through chromedriver")?;
        Ok(Self {
            client,
            driver,
            driver_url,
            profile,
        })
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Reloads the page.
    pub async fn reload(&self) -> anyhow::Result<()> {
        Ok(self.client.refresh().await?)
    }

    /// Polls `check` until it gives a value or `timeout` passes; the error says `what` was
    /// awaited and what the last poll saw.
    pub async fn wait<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("nothing yet");
        loop {
            match check().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                anyhow::bail!("waited {timeout:?} for {what}; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` names, once it is there.
    pub async fn element(&self, css: &str) -> anyhow::Result<Element> {
        self.wait(&format!("{css} to appear"), WAIT, || async {
            Ok(self.client.find(Locator::Css(css)).await.ok())
        })
        .await
    }

    /// Whether `css` names an element now.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.element(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))
    }

    /// Empties the field `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.element(css).await?;
        field.clear().await?;
        field
            .send_keys(text)
            .await
            .with_context(|| format!("typing into {css}"))
    }

    /// Presses each key in turn (a character, or a [`fantoccini::key::Key`] as `char`) where the
    /// focus is, as a keyboard would.
    pub async fn press(&self, keys: &[char]) -> anyhow::Result<()> {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut actions = KeyActions::new("keyboard".into());
        for &key in keys {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client.perform_actions(actions).await?;
        Ok(self.client.release_actions().await?)
    }

    /// The `id` of the element that has the focus (empty when none has one).
    pub async fn focused(&self) -> anyhow::Result<String> {
        let id = self
            .script("return document.activeElement ? document.activeElement.id : '';")
            .await?;
        Ok(id.as_str().unwrap_or("").to_string())
    }

    /// The text of `css` now, if it is there.
    pub async fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Ok(Some(element.text().await?)),
            Err(_) => Ok(None),
        }
    }

    /// The attribute `name` of `css` now, if both are there.
    pub async fn attribute(&self, css: &str, name: &str) -> anyhow::Result<Option<String>> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Ok(element.attr(name).await?),
            Err(_) => Ok(None),
        }
    }

    /// Waits until the attribute `name` of `css` is `value`.
    pub async fn wait_attribute(&self, css: &str, name: &str, value: &str) -> anyhow::Result<()> {
        self.wait(&format!("{css}[{name}={value:?}]"), WAIT, || async {
            let now = self.attribute(css, name).await?;
            if now.as_deref() == Some(value) {
                Ok(Some(()))
            } else {
                anyhow::bail!("{name} is {now:?}")
            }
        })
        .await
    }

    /// Runs `script` in the page (not subject to its CSP) and returns its value.
    pub async fn script(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self, file: &Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(file, png).with_context(|| format!("writing {}", file.display()))
    }

    /// The browser's console since the last call (chromedriver's log endpoint): level and
    /// message of each line. CSP violations show up here too.
    pub async fn console(&self) -> anyhow::Result<Vec<(String, String)>> {
        let session = self
            .client
            .session_id()
            .await?
            .context("no WebDriver session")?;
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .json()
            .await?;
        Ok(answer["value"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| {
                        (
                            l["level"].as_str().unwrap_or("").to_string(),
                            l["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A screenshot and the console log under `target/page/`, named after `name`; what was
    /// saved, for the failure message.
    pub async fn evidence(&self, name: &str) -> String {
        let stem: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = output_dir();
        let png = dir.join(format!("failure-{stem}.png"));
        let log = dir.join(format!("failure-{stem}.console.log"));
        let mut saved = Vec::new();
        if self.screenshot(&png).await.is_ok() {
            saved.push(png.display().to_string());
        }
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let lines = self.console().await.unwrap_or_default();
        let text = std::iter::once(format!("page: {url}"))
            .chain(
                lines
                    .iter()
                    .map(|(level, message)| format!("{level} {message}")),
            )
            .collect::<Vec<_>>()
            .join("\n");
        if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&log, text).is_ok() {
            saved.push(log.display().to_string());
        }
        saved.join(", ")
    }

    /// Runs axe-core in the page; the serious and critical violations.
    pub async fn axe(&self) -> anyhow::Result<Vec<Violation>> {
        let file = axe_script_path();
        let source = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "axe-core is not at {} (bash ci/install-deps.sh fetches it)",
                file.display()
            )
        })?;
        let script = format!(
            "{source}\n;const done = arguments[arguments.length - 1];\
             axe.run(document, {{resultTypes: ['violations']}})\
             .then(r => done(JSON.stringify(r.violations)), e => done('error: ' + e));"
        );
        let answer = self.client.execute_async(&script, Vec::new()).await?;
        let text = answer.as_str().context("axe answered nothing")?;
        anyhow::ensure!(!text.starts_with("error: "), "axe failed: {text}");
        let violations: Vec<Value> = serde_json::from_str(text)?;
        Ok(violations
            .into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| Violation {
                rule: v["id"].as_str().unwrap_or("").into(),
                impact: v["impact"].as_str().unwrap_or("").into(),
                help: v["help"].as_str().unwrap_or("").into(),
                targets: v["nodes"]
                    .as_array()
                    .map(|nodes| nodes.iter().map(|n| n["target"].to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Closes the browser and stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = self.driver.stop(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
