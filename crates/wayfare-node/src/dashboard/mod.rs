//! The web dashboard the daemon serves on its API address: one page (HTML, CSS and JavaScript
//! embedded in the binary, nothing fetched at run time) that reads the same REST API with the
//! same bearer token. A login form takes the token; `wayfare dashboard` asks the daemon for a
//! one-time link instead, whose code (in the URL fragment, so it never reaches a log or a
//! referrer) the page trades once for the token.
//!
//! Who may do what: the page and its assets are public (they hold nothing); every number and
//! every action goes through the authed API. A link code is 128 random bits, lives
//! [`CODE_TTL`], works once, and at most [`MAX_CODES`] wait at a time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json,
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// How long a one-time link works.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// Codes waiting at once (older ones are dropped first).
pub const MAX_CODES: usize = 16;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// Codes handed out by `POST /v1/dashboard/link`, not used yet.
#[derive(Clone, Default)]
pub struct LoginCodes(Arc<Mutex<HashMap<String, Instant>>>);

impl LoginCodes {
    /// A new code, valid for [`CODE_TTL`].
    pub fn issue(&self, now: Instant) -> String {
        let code = hex::encode(rand::random::<[u8; 16]>());
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, t| now.saturating_duration_since(*t) < CODE_TTL);
        while m.len() >= MAX_CODES {
            let Some(oldest) = m.iter().min_by_key(|(_, t)| **t).map(|(c, _)| c.clone()) else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(code.clone(), now);
        code
    }

    /// Uses `code` up: whether it was issued, unused and not expired.
    pub fn redeem(&self, code: &str, now: Instant) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(code)
            .is_some_and(|t| now.saturating_duration_since(t) < CODE_TTL)
    }
}

/// `POST /v1/dashboard/link`: the one-time link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashboardLink {
    /// Open this in a browser on this machine.
    pub url: String,
    /// Seconds it works for (once).
    pub expires_in: u64,
}

/// `POST /v1/login` body.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginRequest {
    /// The code from the link.
    pub code: String,
}

/// `POST /v1/login` answer.
#[derive(Debug, Clone, Serialize)]
pub struct LoginAnswer {
    /// The API token (the page keeps it for this tab only).
    pub token: String,
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// `GET /` and `GET /ui`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The JSON answer of a link request.
pub fn link(base: &str, code: &str) -> Json<DashboardLink> {
    Json(DashboardLink {
        url: format!("{base}/#code={code}"),
        expires_in: CODE_TTL.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once_and_not_after_it_expires() {
        let c = LoginCodes::default();
        let t = Instant::now();
        let a = c.issue(t);
        assert!(c.redeem(&a, t));
        assert!(!c.redeem(&a, t), "used up");
        let b = c.issue(t);
        assert!(!c.redeem(&b, t + CODE_TTL), "expired");
        assert!(!c.redeem("guess", t));
    }

    #[test]
    fn waiting_codes_are_bounded() {
        let c = LoginCodes::default();
        let t = Instant::now();
        let first = c.issue(t);
        for i in 0..MAX_CODES {
            c.issue(t + Duration::from_millis(i as u64 + 1));
        }
        assert!(!c.redeem(&first, t), "the oldest was dropped");
        assert!(c.0.lock().unwrap().len() <= MAX_CODES);
    }

    #[test]
    fn the_page_names_only_its_own_assets() {
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"));
    }
}
