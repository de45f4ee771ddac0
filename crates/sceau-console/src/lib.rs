//! The web console of sceau-server (issue 15): server-rendered pages for the PKI team
//! (operators), behind a password and a second factor (agency guide R2, R4, R86).
//!
//! Invariants:
//! - The console calls the same services as the CLI (`sceau_admin::Registry`, the store, the
//!   rate limiter): no rule lives twice. Every change is audited with who (the console user),
//!   when, and from where (the client address).
//! - Every page answers with a strict Content-Security-Policy (scripts only from the console
//!   itself — one file, for the passkey ceremonies — no inline script or style, no framing,
//!   forms and fetches to this origin only), `no-store`, `nosniff` and no referrer. Templates
//!   escape every value (minijinja's HTML auto-escaping). Every page works without script;
//!   passkeys need it.
//! - Every POST carries the session's CSRF token, compared in constant time, or changes
//!   nothing; the session cookie is `__Host-`, `Secure`, `HttpOnly`, `SameSite=Strict`.
//! - A change to an external account needs a second factor given within
//!   [`Settings::fresh_mfa`] (a code in the same form otherwise).
//! - Form bodies are limited to [`MAX_FORM_BYTES`] and every field to its own length.

// The pages' helpers return the answer to give instead as their error: it is sent at once,
// never stored, so its size costs nothing.
#![allow(clippy::result_large_err)]

pub mod approvals;
pub mod auth;
pub mod charts;
pub mod dashboard;
pub mod holder;
pub mod invitations;
pub mod mail;
pub mod operator;
pub mod passkeys;
pub mod password;
pub mod procedures;
pub mod reports;
pub mod session;
pub mod totp;
pub mod webauthn;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use sceau_acme::Acme;
use sceau_admin::{Registry, WrapKey};
use sceau_store::Store;

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// The file, beside the database, of the key that seals TOTP secrets.
pub const TOTP_KEY_FILE: &str = "console-totp.key";

/// The client's address, set by the listener for every request.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer name authenticator apps show.
    pub issuer: String,
    /// A session idle this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, however busy.
    pub absolute_timeout: Duration,
    /// A second factor given this recently covers a change without asking again.
    pub fresh_mfa: Duration,
    /// R9: the server's limit on a MAC key's age (seconds), shown to holders.
    pub max_key_age: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "Sceau".into(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            fresh_mfa: Duration::from_secs(5 * 60),
            max_key_age: None,
        }
    }
}

/// The console's state: the services it calls and its templates.
pub struct Console {
    /// The ACME services: rate limits, revocation, the validator's CAA lookups.
    pub acme: Arc<Acme>,
    pub store: Store,
    pub registry: Registry,
    pub totp_key: WrapKey,
    pub settings: Settings,
    templates: Environment<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("code.html", include_str!("../templates/code.html")),
    ("enrol.html", include_str!("../templates/enrol.html")),
    ("recovery.html", include_str!("../templates/recovery.html")),
    ("accounts.html", include_str!("../templates/accounts.html")),
    ("account.html", include_str!("../templates/account.html")),
    (
        "new_account.html",
        include_str!("../templates/new_account.html"),
    ),
    ("created.html", include_str!("../templates/created.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("mine.html", include_str!("../templates/mine.html")),
    ("key.html", include_str!("../templates/key.html")),
    ("invited.html", include_str!("../templates/invited.html")),
    (
        "invitation.html",
        include_str!("../templates/invitation.html"),
    ),
    (
        "approvals.html",
        include_str!("../templates/approvals.html"),
    ),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("figures.html", include_str!("../templates/figures.html")),
    ("mydash.html", include_str!("../templates/mydash.html")),
    ("report.html", include_str!("../templates/report.html")),
    (
        "procedures.html",
        include_str!("../templates/procedures.html"),
    ),
    (
        "procedure.html",
        include_str!("../templates/procedure.html"),
    ),
    (
        "procedure_done.html",
        include_str!("../templates/procedure_done.html"),
    ),
    ("passkeys.html", include_str!("../templates/passkeys.html")),
];

const CSS: &str = include_str!("../static/console.css");
const JS: &str = include_str!("../static/webauthn.js");

/// The Content-Security-Policy of every answer: nothing runs, nothing is framed, forms post
/// here only; images only from here or `data:` (the enrolment QR code).
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Console {
    pub fn new(
        acme: Arc<Acme>,
        registry: Registry,
        totp_key: WrapKey,
        settings: Settings,
    ) -> Arc<Console> {
        let mut templates = Environment::new();
        for (name, text) in TEMPLATES {
            templates
                .add_template(name, text)
                .expect("the console's templates parse");
        }
        templates.add_filter("when", |t: i64| sceau_admin::report::when(t));
        Arc::new(Console {
            store: acme.store.clone(),
            acme,
            registry,
            totp_key,
            settings,
            templates,
        })
    }

    /// Renders `name` with `ctx` as an HTML answer of `status`.
    pub(crate) fn page(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!("console template {name}: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "console page error\n").into_response()
            }
        }
    }

    /// Renders `name` with `ctx` to text (a report for a mail).
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        self.templates.get_template(name)?.render(ctx)
    }

    /// A page with one message (an error, a refusal), and a link onwards.
    pub(crate) fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        self.page(
            status,
            "message.html",
            minijinja::context! { title => title, text => text },
        )
    }
}

/// Headers every console answer carries.
async fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

async fn not_found(axum::extract::State(c): axum::extract::State<Arc<Console>>) -> Response {
    c.message(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

/// The console's routes. The listener must insert [`Peer`] into every request.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(operator::home))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/login/code", get(auth::code_form).post(auth::code))
        .route("/enrol", get(auth::enrol_form).post(auth::enrol))
        .route("/logout", post(auth::logout))
        .route("/accounts", get(operator::accounts))
        .route(
            "/accounts/new",
            get(operator::new_account_form).post(operator::new_account),
        )
        .route("/accounts/{kid}", get(operator::account))
        .route("/accounts/{kid}/status", post(operator::account_status))
        .route("/accounts/{kid}/names", post(operator::account_names))
        .route("/audit", get(operator::audit))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/procedures", get(procedures::index))
        .route("/procedures/review", post(procedures::review))
        .route("/procedures/run", post(procedures::run))
        .route("/accounts/{kid}/report", get(reports::operator_report))
        .route("/mine/report", get(holder::report))
        .route("/accounts/{kid}/invite", post(invitations::invite))
        .route("/approvals", get(approvals::approvals))
        .route("/approvals/{id}", post(approvals::decide))
        .route(
            "/invite/{token}",
            get(invitations::invitation_form).post(invitations::accept_invitation),
        )
        .route("/mine", get(holder::mine))
        .route("/mine/dashboard", get(holder::dashboard))
        .route("/mine/names", post(holder::request_name))
        .route("/mine/key", post(holder::regenerate_key))
        .route("/mine/acme/{id}/suspend", post(holder::suspend_acme))
        .route("/mine/certs/{serial}/revoke", post(holder::revoke))
        .route("/static/console.css", get(css))
        .route("/static/webauthn.js", get(js))
        .route("/passkeys", get(passkeys::page).post(passkeys::register))
        .route("/passkeys/options", post(passkeys::register_options))
        .route("/login/passkey/options", post(passkeys::login_options))
        .route("/login/passkey", post(passkeys::login))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}
