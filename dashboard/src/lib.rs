//! The dashboard's shared half: its pages and their assets, the bounded history its
//! plots draw, and (feature `auth`) the bearer-token check of a cluster's dashboards.
//!
//! The limb serves one node's devices from its status board; the brain serves the whole
//! cluster from watches. Both answer the same JSON (`/dashboard/api/overview`,
//! `/dashboard/api/devices/{namespace}/{name}` and the `batch` events of
//! `/dashboard/api/events[/{namespace}/{name}]`), so one script renders either. This
//! crate knows nothing of wasmtime or of either source.
//!
//! Every asset is compiled into the binary (edge networks are often cut off from CDNs),
//! and the pages build their DOM with `textContent`, so a device-provided string is never
//! parsed as HTML. Plots are hand-drawn SVG: a few dozen lines of script, no chart
//! library to ship, audit or update.

#[cfg(feature = "auth")]
pub mod auth;
pub mod history;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use history::History;

/// The page's markup: a frame the script fills.
pub const INDEX: &str = include_str!("../assets/index.html");
/// The script that renders every page.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The pages' style.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Serves `body` with the headers every page and asset carries.
pub fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Nothing from elsewhere, no inline script: a device string that did reach
            // the DOM as markup still could not run.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page and its assets (`/`, `/dashboard/app.js`, `/dashboard/style.css`), to merge
/// with a server's JSON routes.
pub fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { page(STYLE_CSS, "text/css; charset=utf-8") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_never_parses_data_as_html() {
        assert!(!APP_JS.contains("innerHTML") && !APP_JS.contains("insertAdjacentHTML"));
        assert!(!APP_JS.contains("eval(") && !APP_JS.contains("new Function"));
    }
}
