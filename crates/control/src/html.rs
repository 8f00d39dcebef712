//! The HTML every page of the control plane shares: text escaped for HTML and XML, and the
//! page shell (the common head, the stylesheet, the pages' security headers). The status
//! page, the dashboard, the SLA report and the signed links' forms all build on it.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// Text made safe for HTML and XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page with the common head and the pages' security headers.
pub fn page(title: &str, head_extra: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/assets/style.css\">{head_extra}</head>\
         <body>{body}</body></html>",
        escape(title)
    );
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}
