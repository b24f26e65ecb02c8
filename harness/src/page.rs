//! The cash-flow page behind the local gateway: its static files (`web/`), its `config.json`,
//! and the identity provider reached same-origin under [`IDENTITY_PREFIX`] (ADR 0017).
//!
//! [`locations`] renders the nginx locations that serve them; the gateway's configuration
//! includes every `site/*.conf` of its folder ([`crate::gateway`]), where [`write`] puts them.
//! Every answer carries the page's Content-Security-Policy ([`CSP`]): scripts, styles, images and
//! API calls from the page's own origin only, no inline script or style, no framing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// The page's OAuth2 client id (a public client: no secret, PKCE).
pub const CLIENT_ID: &str = "cashflow-page";
/// Where the gateway proxies the identity provider, so that the page's sign-in, token and logout
/// calls are same-origin.
pub const IDENTITY_PREFIX: &str = "/identity";
/// The scopes the page asks for.
pub const SCOPE: &str = "openid entries:write entries:read balances:read";
/// Lifetime of the page's access tokens in `harness up` (it refreshes them before they expire).
pub const ACCESS_TTL: Duration = Duration::from_secs(300);
/// The Content-Security-Policy of every answer of the page's locations.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; font-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// What the page reads from `/config.json` at start: the identity provider's endpoints and the
/// merchants' book rules. The endpoints are paths under [`IDENTITY_PREFIX`] here; in AWS they may
/// be another origin's URLs (terraform/modules/web).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageConfig {
    /// The provider's `iss` (what the page checks in the ID token).
    pub issuer: String,
    /// [`CLIENT_ID`].
    pub client_id: String,
    /// Authorization endpoint (the sign-in form).
    pub authorization_endpoint: String,
    /// Token endpoint (code exchange, refresh).
    pub token_endpoint: String,
    /// End-session endpoint (logout).
    pub end_session_endpoint: String,
    /// [`SCOPE`].
    pub scope: String,
    /// The merchants' time zone ("today"; the ledger's `MERCHANT_TIMEZONE`).
    pub time_zone: String,
    /// The merchants' currency (the ledger's `MERCHANT_CURRENCY`).
    pub currency: String,
    /// How many days back an entry may be dated (the ledger's `BACKDATE_WINDOW_DAYS`).
    pub backdate_days: u16,
    /// The page's deadline for one API call, in milliseconds.
    pub request_timeout_ms: u64,
}

impl PageConfig {
    /// The configuration for a provider with issuer `issuer` proxied under [`IDENTITY_PREFIX`],
    /// with the services' default book rules.
    pub fn proxied(issuer: &str) -> Self {
        let endpoint = |path: &str| format!("{IDENTITY_PREFIX}{path}");
        Self {
            issuer: issuer.to_string(),
            client_id: CLIENT_ID.to_string(),
            authorization_endpoint: endpoint(crate::login::AUTHORIZE_PATH),
            token_endpoint: endpoint(crate::identity::TOKEN_PATH),
            end_session_endpoint: endpoint(crate::login::LOGOUT_PATH),
            scope: SCOPE.to_string(),
            time_zone: "America/Sao_Paulo".to_string(),
            currency: "BRL".to_string(),
            backdate_days: 30,
            request_timeout_ms: 10_000,
        }
    }
}

/// Where the page's files are and what serves it.
#[derive(Debug, Clone)]
pub struct PageSite {
    /// The folder of `index.html` and `assets/` (the repository's `web/`).
    pub root: PathBuf,
    /// The identity provider as the gateway reaches it (`host:port`).
    pub identity: String,
    /// `/config.json`.
    pub config: PageConfig,
}

/// The repository's `web/` folder.
pub fn web_root() -> PathBuf {
    crate::paths::workspace_root().join("web")
}

/// Fails, saying which folder is in the way, when nginx's worker could not read the page:
/// started by root, nginx serves files as `nobody`, which must be able to enter every folder
/// above `index.html` and read it. A checkout in a folder only its owner may enter (what
/// `mktemp -d` makes) would otherwise serve 404 at `/` with no word why.
pub fn check_readable(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let index = root.join("index.html");
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .with_context(|| format!("reading the permissions of {}", path.display()))
    };
    anyhow::ensure!(
        mode(&index)? & 0o004 != 0,
        "nginx's worker (user nobody) cannot read {}: run `chmod o+r` on it",
        index.display()
    );
    for folder in root.ancestors() {
        let folder_mode = mode(folder)?;
        anyhow::ensure!(
            folder_mode & 0o001 != 0,
            "nginx's worker (user nobody) cannot serve the page from {}: {} is closed to other \
             users (mode {:o}); run `chmod o+x {}`, or work in a folder others may enter",
            root.display(),
            folder.display(),
            folder_mode & 0o777,
            folder.display()
        );
    }
    Ok(())
}

/// The nginx locations serving the page (inside the gateway's `server` block).
pub fn locations(site: &PageSite) -> anyhow::Result<String> {
    let config = serde_json::to_string(&site.config)?;
    // nginx would expand `$` and end the string at `'`; no value of ours has either.
    anyhow::ensure!(
        !config.contains(['$', '\'', '\\']),
        "the page's configuration has a character nginx cannot return verbatim: {config}"
    );
    let root = site.root.display();
    let headers = format!(
        "add_header Content-Security-Policy \"{CSP}\" always;\n\
         \x20       add_header X-Content-Type-Options nosniff always;\n\
         \x20       add_header Referrer-Policy no-referrer always;\n\
         \x20       add_header X-Frame-Options DENY always;"
    );
    // Types and compression for the static files only: the API's answers stay as they were.
    let statics = "types { text/html html; text/css css; text/javascript js; \
                   image/svg+xml svg; image/png png; }\n\
                   \x20       gzip on;\n        gzip_types text/css text/javascript image/svg+xml;\n\
                   \x20       add_header Cache-Control no-cache always;";
    let mut out = String::new();
    writeln!(
        out,
        "    # The cash-flow page (harness/src/page.rs; generated, edits are overwritten): static\n\
         \x20   # files without a build step, revalidated on each load (no content hashes in names).\n\
         \x20   location = / {{\n        root {root};\n        try_files /index.html =404;\n\
         \x20       {statics}\n        {headers}\n    }}\n\
         \x20   location ^~ /assets/ {{\n        root {root};\n        {statics}\n        {headers}\n    }}\n\
         \x20   location = /favicon.ico {{\n        root {root};\n        try_files /assets/icon.svg =404;\n\
         \x20       {statics}\n        {headers}\n    }}\n\
         \x20   location = /config.json {{\n        default_type application/json;\n\
         \x20       add_header Cache-Control no-store always;\n        {headers}\n\
         \x20       return 200 '{config}';\n    }}\n\
         \x20   # The identity provider, same-origin: the sign-in form, the token endpoint, logout.\n\
         \x20   location ^~ {IDENTITY_PREFIX}/ {{\n        proxy_pass http://{}/;\n\
         \x20       proxy_next_upstream off;\n        {headers}\n    }}",
        site.identity
    )?;
    Ok(out)
}

/// The file the gateway in `gateway_dir` includes the page's locations from.
pub fn conf_file(gateway_dir: &Path) -> PathBuf {
    gateway_dir.join("site").join("page.conf")
}

/// Writes the page's locations where the gateway in `gateway_dir` includes them.
pub fn write(gateway_dir: &Path, site: &PageSite) -> anyhow::Result<()> {
    check_readable(&site.root)?;
    let file = conf_file(gateway_dir);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&file, locations(site)?).with_context(|| format!("writing {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose.yaml's gateway serves the page with `compose/gateway/page.conf`, generated like
    /// `harness up`'s: this test fails when it is stale, and `BLESS=1 cargo test -p harness --lib
    /// page` rewrites it.
    #[test]
    fn the_compose_page_configuration_is_current() {
        let site = PageSite {
            root: PathBuf::from("/usr/share/cashflow/web"),
            identity: "identity:8089".into(),
            config: PageConfig::proxied("http://identity:8089"),
        };
        let expected = locations(&site).expect("locations");
        let file = crate::paths::workspace_root().join("compose/gateway/page.conf");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&file, &expected).expect("writing compose/gateway/page.conf");
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is stale: BLESS=1 cargo test -p harness --lib page",
            file.display()
        );
    }

    #[test]
    fn the_csp_allows_nothing_inline_nor_from_elsewhere() {
        assert!(!CSP.contains("unsafe"));
        assert!(CSP.starts_with("default-src 'self';"));
        for directive in [
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(CSP.contains(directive), "{directive}");
        }
        assert!(CSP.contains("frame-ancestors 'none'") && CSP.contains("object-src 'none'"));
    }

    /// A checkout in a folder closed to other users is refused with the folder's name, not
    /// served as 404 by nginx's worker.
    #[test]
    fn a_web_root_nginx_cannot_read_is_refused_with_the_folder_in_the_way() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: nginx's worker is this user (not started by root)");
            return;
        }
        let base = std::env::temp_dir().join(format!("page-root-{}", uuid::Uuid::new_v4()));
        let root = base.join("clone").join("web");
        std::fs::create_dir_all(&root).expect("folders");
        std::fs::write(root.join("index.html"), "<!doctype html>").expect("index");
        for dir in [&base, &base.join("clone"), &root] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("mode");
        }
        std::fs::set_permissions(
            root.join("index.html"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("mode");
        assert!(check_readable(&root).is_ok());
        std::fs::set_permissions(base.join("clone"), std::fs::Permissions::from_mode(0o700))
            .expect("mode");
        let refused = check_readable(&root).expect_err("a closed folder above the page");
        let said = format!("{refused:#}");
        assert!(
            said.contains(&format!("{} is closed", base.join("clone").display())),
            "{said}"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_configuration_nginx_would_mangle_is_refused() {
        let site = PageSite {
            root: PathBuf::from("/w"),
            identity: "127.0.0.1:1".into(),
            config: PageConfig::proxied("http://x/$uri"),
        };
        assert!(locations(&site).is_err());
    }
}
