//! Server-rendered pages, embedded in the binary: the players' status page (`/status`:
//! components, current state, active incidents with their updates, 90-day uptime bars) with
//! its JSON Feed (`/status/feed.json`) and Atom feed (`/status/feed.atom`); the operators'
//! sign-in (`/login`) and dashboard (`/dashboard`, live charts drawn by the vendored uPlot
//! from `/api/v1/series`, node states with drain buttons, alerts, incidents, SLO budgets,
//! who is on call now and next with the open pages (acknowledge, resolve), links to the
//! printable SLA reports of last month and this month).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use chrono::Datelike;

use crate::dates::{day, rfc3339, utc};
use crate::html::{escape, page};
use crate::operator::audit;
use crate::operator_sessions::{SESSION_COOKIE, SESSION_LIFETIME, plain_name};
use crate::public_status::{
    Component, ComponentState, PublicIncident, PublicWindow, UPTIME_DAYS, public_status,
};
use crate::state::Uptime;
use crate::{Control, now_ms};

const STYLE: &str = include_str!("../assets/style.css");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const UPLOT_JS: &str = include_str!("../assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uPlot.min.css");

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/status", get(status_page))
        .route("/status/feed.json", get(json_feed))
        .route("/status/feed.atom", get(atom_feed))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/dashboard", get(dashboard))
        .route("/assets/style.css", get(|| asset("text/css", STYLE)))
        .route(
            "/assets/dashboard.js",
            get(|| asset("text/javascript", DASHBOARD_JS)),
        )
        .route(
            "/assets/uplot.js",
            get(|| asset("text/javascript", UPLOT_JS)),
        )
        .route("/assets/uplot.css", get(|| asset("text/css", UPLOT_CSS)))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn unavailable(e: crate::state::StateError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Status unavailable",
            "",
            &format!(
                "<main><h1>Status unavailable</h1><p>{}</p></main>",
                escape(&e.to_string())
            ),
        ),
    )
        .into_response()
}

/// The bar colour class for one day's uptime.
fn bar_class(up: i64, total: i64) -> &'static str {
    if total == 0 {
        return "none";
    }
    match up as f64 / total as f64 {
        r if r >= 0.999 => "ok",
        r if r >= 0.99 => "minor",
        r if r >= 0.95 => "partial",
        _ => "major",
    }
}

fn uptime_bars(days: &[Uptime], today_start_s: i64) -> String {
    let mut bars = String::new();
    for back in (0..UPTIME_DAYS).rev() {
        let start = today_start_s - back * 86_400;
        let found = days.iter().find(|d| d.start_s == start);
        let (up, total) = found.map_or((0, 0), |d| (d.up_s, d.total_s));
        let label = if total == 0 {
            format!("{}: no data", day(start * 1000))
        } else {
            format!(
                "{}: {:.2}% up",
                day(start * 1000),
                100.0 * up as f64 / total as f64
            )
        };
        let _ = write!(
            bars,
            "<span class=\"bar {}\" title=\"{label}\"></span>",
            bar_class(up, total)
        );
    }
    bars
}

fn incident_html(incident: &PublicIncident) -> String {
    let mut html = format!(
        "<article class=\"incident\"><h3>{}</h3><p class=\"meta\">{} · {}",
        escape(&incident.title),
        escape(&incident.component),
        escape(incident.status.as_str()),
    );
    if let Some(eta) = incident.eta_ms {
        let _ = write!(html, " · expected fix by {}", utc(eta));
    }
    html.push_str("</p><ul class=\"updates\">");
    for update in incident.updates.iter().rev() {
        let _ = write!(
            html,
            "<li><time>{}</time> <b>{}</b> {}</li>",
            utc(update.ts_ms),
            escape(&update.status),
            escape(&update.message),
        );
    }
    html.push_str("</ul></article>");
    html
}

async fn status_page(State(control): State<Arc<Control>>) -> Response {
    let status = match public_status(&control) {
        Ok(status) => status,
        Err(e) => return unavailable(e),
    };
    let components = &status.components;
    let mut body = format!(
        "<main><header><h1>Croupier status</h1><p class=\"feeds\"><a href=\"/status/feed.atom\">Atom</a> · \
         <a href=\"/status/feed.json\">JSON feed</a></p></header>{}<section id=\"components\">",
        banners(components, control.config.test_players.demo)
    );
    let now_s = now_ms() / 1000;
    let today_start = now_s - now_s.rem_euclid(86_400);
    for c in components {
        body.push_str(&component_html(c, today_start));
    }
    body.push_str("</section><section id=\"maintenance\"><h2>Scheduled maintenance</h2>");
    let windows = &status.maintenance;
    if windows.is_empty() {
        body.push_str("<p class=\"quiet\">None planned in the next 7 days.</p>");
    }
    for window in windows {
        body.push_str(&window_html(window));
    }
    body.push_str("</section><section id=\"incidents\"><h2>Active incidents</h2>");
    let incidents = &status.incidents;
    if incidents.is_empty() {
        body.push_str("<p class=\"quiet\">No incidents right now.</p>");
    }
    for incident in incidents {
        body.push_str(&incident_html(incident));
    }
    let _ = write!(
        body,
        "</section><footer>Updated {}; this page refreshes every 30 seconds.</footer></main>",
        utc(now_ms())
    );
    page(
        "Croupier status",
        "<meta http-equiv=\"refresh\" content=\"30\">\
         <link rel=\"alternate\" type=\"application/atom+xml\" href=\"/status/feed.atom\">\
         <link rel=\"alternate\" type=\"application/feed+json\" href=\"/status/feed.json\">",
        &body,
    )
}

/// The banner of the worst component's status, and in demo mode the play-money notice.
fn banners(components: &[Component], demo: bool) -> String {
    use ComponentState::{Degraded, MajorOutage, Operational, PartialOutage, UnderMaintenance};
    let worst = components
        .iter()
        .map(|c| c.status)
        .max_by_key(|s| match s {
            MajorOutage => 4,
            PartialOutage => 3,
            Degraded => 2,
            UnderMaintenance => 1,
            Operational => 0,
        })
        .unwrap_or(Operational);
    let banner = match worst {
        Operational => "All systems operational",
        UnderMaintenance => "Scheduled maintenance is in progress",
        Degraded => "Some systems are slower than usual",
        PartialOutage => "Some systems are having problems",
        MajorOutage => "A major outage is under way",
    };
    let worst = worst.as_str();
    let demo = if demo {
        "<p id=\"demo\" class=\"banner degraded\">Demo casino: play money only</p>"
    } else {
        ""
    };
    format!("<p id=\"banner\" class=\"banner {worst}\">{banner}</p>{demo}")
}

/// A component's row: its state, its daily uptime bars and its 90-day uptime.
fn component_html(c: &Component, today_start: i64) -> String {
    let uptime = c.uptime_90d.map_or("no data yet".to_owned(), |u| {
        format!("{:.3}% uptime", u * 100.0)
    });
    format!(
        "<div class=\"component\" data-component=\"{id}\"><div class=\"row\"><span class=\"name\">{name}</span>\
         <span class=\"state {state}\">{label}</span></div><div class=\"bars\">{bars}</div>\
         <div class=\"row small\"><span>{UPTIME_DAYS} days ago</span><span>{uptime}</span><span>today</span></div></div>",
        id = escape(c.id),
        name = escape(c.name),
        state = c.status.as_str(),
        label = escape(c.status_label),
        bars = uptime_bars(&c.days, today_start),
    )
}

/// A scheduled maintenance window.
fn window_html(window: &PublicWindow) -> String {
    format!(
        "<article class=\"window\"><h3>{}</h3><p class=\"meta\">{} · {} to {}{}</p></article>",
        escape(&window.title),
        escape(&window.scope),
        utc(window.starts_ms),
        utc(window.ends_ms),
        if window.in_progress {
            " · in progress"
        } else {
            ""
        },
    )
}

/// Incident updates, newest first, for the feeds: (time, id, text).
fn feed_items(control: &Control) -> Result<Vec<(i64, String, String)>, crate::state::StateError> {
    let mut items = Vec::new();
    for incident in control.state.incidents(false)? {
        for (n, update) in incident.timeline.iter().enumerate() {
            if !update.is_public() {
                continue;
            }
            items.push((
                update.ts_ms,
                format!("incident-{}-update-{n}", incident.id),
                format!(
                    "[{}] {} ({}): {}",
                    update.status, incident.title, incident.component, update.message
                ),
            ));
        }
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    items.truncate(50);
    Ok(items)
}

/// The status page's JSON Feed (jsonfeed.org 1.1); fields in alphabetical order, the order
/// it has always been sent in.
#[derive(Serialize)]
struct Feed {
    feed_url: &'static str,
    home_page_url: &'static str,
    items: Vec<FeedItem>,
    title: &'static str,
    version: &'static str,
}

/// An incident update in the JSON Feed.
#[derive(Serialize)]
struct FeedItem {
    content_text: String,
    date_published: String,
    id: String,
    title: String,
    url: &'static str,
}

async fn json_feed(State(control): State<Arc<Control>>) -> Response {
    let items = match feed_items(&control) {
        Ok(items) => items,
        Err(e) => return unavailable(e),
    };
    let items = items
        .into_iter()
        .map(|(ts, id, text)| FeedItem {
            content_text: text.clone(),
            date_published: rfc3339(ts),
            id,
            title: text,
            url: "/status",
        })
        .collect();
    let feed = Feed {
        feed_url: "/status/feed.json",
        home_page_url: "/status",
        items,
        title: "Croupier status",
        version: "https://jsonfeed.org/version/1.1",
    };
    (
        [(header::CONTENT_TYPE, "application/feed+json")],
        serde_json::to_string(&feed).unwrap_or_default(),
    )
        .into_response()
}

async fn atom_feed(State(control): State<Arc<Control>>) -> Response {
    let items = match feed_items(&control) {
        Ok(items) => items,
        Err(e) => return unavailable(e),
    };
    let updated = items.first().map_or(now_ms(), |i| i.0);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <title>Croupier status</title><id>urn:croupier:status</id><updated>{}</updated>\
         <link rel=\"alternate\" href=\"/status\"/>",
        rfc3339(updated)
    );
    for (ts, id, text) in items {
        let _ = write!(
            xml,
            "<entry><id>urn:croupier:{id}</id><title>{t}</title><updated>{u}</updated>\
             <author><name>Croupier operations</name></author><content type=\"text\">{t}</content></entry>",
            t = escape(&text),
            u = rfc3339(ts)
        );
    }
    xml.push_str("</feed>");
    ([(header::CONTENT_TYPE, "application/atom+xml")], xml).into_response()
}

fn login_form(message: &str) -> String {
    format!(
        "<main class=\"narrow\"><h1>Croupier operations</h1>{message}\
         <form method=\"post\" action=\"/login\"><label>Ops token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <label>Your name (for the audit log) <input name=\"name\" autocomplete=\"username\" \
         pattern=\"[A-Za-z0-9._@-]{{1,64}}\"></label>\
         <button type=\"submit\">Sign in</button></form></main>"
    )
}

async fn login_page() -> Response {
    page("Sign in", "", &login_form(""))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    name: String,
}

/// Signs in: the ops token opens a server-side session; the cookie holds only its id.
async fn login(State(control): State<Arc<Control>>, Form(form): Form<LoginForm>) -> Response {
    let name = plain_name(form.name.trim()).unwrap_or("operator");
    let actor = format!("session:{name}");
    let detail = json!({});
    if !croupier_web::same_token(&form.token, &control.config.ops_token) {
        let refused = Err(crate::refusal::refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong ops token",
        ));
        audit::<()>(&control, &actor, "sign_in", "dashboard", &detail, &refused);
        let message = "<p class=\"error\">That is not the ops token.</p>";
        return (
            StatusCode::UNAUTHORIZED,
            page("Sign in", "", &login_form(message)),
        )
            .into_response();
    }
    let Some((id, _)) = control.sessions.open(name, now_ms()) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session",
        )
            .into_response();
    };
    audit::<()>(&control, &actor, "sign_in", "dashboard", &detail, &Ok(()));
    let secure = if control.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response()
}

/// Signs out: the session ends on the server, whatever the browser keeps.
async fn logout(State(control): State<Arc<Control>>, headers: HeaderMap) -> Response {
    if let Some((id, session)) = control.sessions.of_request(&headers, now_ms()) {
        control.sessions.revoke(&id);
        let actor = format!("session:{}", session.name);
        audit::<()>(
            &control,
            &actor,
            "sign_out",
            "dashboard",
            &json!({}),
            &Ok(()),
        );
    }
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Links to the printable SLA reports of last month and of this month so far.
fn sla_links(now_ms: i64) -> String {
    let today = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .date_naive();
    let this_month = today.with_day(1).unwrap_or(today);
    let last_month = this_month
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(this_month);
    let next_month = this_month
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(this_month);
    format!(
        "<a id=\"sla-last-month\" href=\"/api/v1/sla?format=html&amp;from={last_month}&amp;to={this_month}\">SLA report: last month</a> \
         <a id=\"sla-this-month\" href=\"/api/v1/sla?format=html&amp;from={this_month}&amp;to={next_month}\">this month</a>"
    )
}

/// The dashboard's charts, each drawn by `dashboard.js` from the series: the database's
/// connections only where the control plane reads a PostgreSQL store.
fn charts_html(control: &Control) -> String {
    let charts = [
        ("cpu", "CPU by host (%)"),
        ("memory", "Memory by host (%)"),
        ("network", "Network by host (KB/s, in + out)"),
        ("requests", "Player requests per second"),
        ("latency", "Latency (ms)"),
        ("errors", "Error rate (%)"),
        ("bets", "Bets per second"),
        ("rounds", "Rounds in flight"),
        (
            "store",
            "Ledger store p99 (ms): queue wait, turn wait, commit, checkpoint",
        ),
    ];
    let watches_a_database = !control.store_servers.is_empty();
    let connections = (
        "connections",
        "Ledger database connections, and its max_connections",
    );
    let mut html = String::new();
    for (id, title) in charts
        .into_iter()
        .chain(watches_a_database.then_some(connections))
    {
        let _ = write!(
            html,
            "<figure class=\"chart\"><figcaption>{title}</figcaption><div id=\"chart-{id}\" data-chart=\"{id}\"></div></figure>"
        );
    }
    html
}

async fn dashboard(State(control): State<Arc<Control>>, headers: HeaderMap) -> Response {
    let Some((_, session)) = control.sessions.of_request(&headers, now_ms()) else {
        return Redirect::to("/login").into_response();
    };
    let sla = sla_links(now_ms());
    let chart_html = charts_html(&control);
    let body = format!(
        "<main class=\"wide\"><header><h1>Croupier operations</h1><nav><a href=\"/status\">Status page</a> \
         {sla} \
         <form method=\"post\" action=\"/logout\" class=\"inline\"><button>Sign out</button></form></nav></header>\
         <section><h2>Nodes</h2><table id=\"nodes\"><thead><tr><th>Node</th><th>State</th><th>Healthy</th>\
         <th>In flight</th><th>WebSockets</th><th></th></tr></thead><tbody></tbody></table>\
         <p id=\"node-message\" class=\"quiet\"></p></section>\
         <section><h2>Live (1 s)</h2><div class=\"charts\">{chart_html}</div></section>\
         <section class=\"columns\"><div><h2>Alerts</h2><table id=\"alerts\"><tbody></tbody></table></div>\
         <div><h2>SLO budgets</h2><table id=\"slos\"><thead><tr><th>SLO</th><th>Objective</th><th>Budget left</th>\
         <th>Burn</th></tr></thead><tbody></tbody></table></div></section>\
         <section><h2>On call</h2><table id=\"oncall\"><thead><tr><th>Schedule</th><th>Now</th><th>Next</th>\
         <th>From</th></tr></thead><tbody></tbody></table><table id=\"pages\"><thead><tr><th>Page</th><th>Incident</th>\
         <th>Level</th><th>Paged</th><th>State</th><th></th></tr></thead><tbody></tbody></table>\
         <p id=\"page-message\" class=\"quiet\"></p></section>\
         <section><h2>Incidents</h2><div id=\"incidents\"></div></section>\
         <section><h2>Backups</h2><p id=\"backup-health\" class=\"quiet\"></p><table id=\"backups\"><thead><tr>\
         <th>Restore test</th><th>Result</th><th>RTO</th><th>RPO</th><th>Backup</th></tr></thead><tbody></tbody></table></section>\
         <section><h2>Replication</h2><table id=\"replication\"><thead><tr><th>Store</th><th>Primary</th>\
         <th>Standby</th><th>State</th><th>Write lag</th><th>Flush lag</th><th>Replay lag</th><th>Replay behind</th>\
         </tr></thead><tbody></tbody></table></section>\
         <section><h2>Maintenance</h2><form id=\"rollout-form\" class=\"inline-form\"><label>New build (path) \
         <input name=\"binary\" required></label><label>Batch <input name=\"batch\" type=\"number\" value=\"1\" min=\"1\"></label>\
         <button type=\"submit\">Start rolling update</button></form><p id=\"rollout-message\" class=\"quiet\"></p>\
         <div id=\"rollouts\"></div><h3>Windows</h3><table id=\"windows\"><tbody></tbody></table></section></main>\
         <script src=\"/assets/uplot.js\"></script><script src=\"/assets/dashboard.js\"></script>"
    );
    // The session's CSRF token, for dashboard.js to send with every change.
    let head = format!(
        "<link rel=\"stylesheet\" href=\"/assets/uplot.css\">\
         <meta name=\"csrf-token\" content=\"{}\">",
        session.csrf
    );
    page("Croupier operations", &head, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_links_last_and_this_months_reports() {
        // 2026-11-30 00:04:05 UTC.
        let links = sla_links(1_795_997_045_000);
        assert!(
            links.contains("from=2026-10-01&amp;to=2026-11-01"),
            "{links}"
        );
        assert!(
            links.contains("from=2026-11-01&amp;to=2026-12-01"),
            "{links}"
        );
    }

    fn component(status: ComponentState) -> Component {
        Component {
            days: Vec::new(),
            id: "games",
            name: "Games",
            status,
            status_label: status.label(),
            uptime_90d: None,
        }
    }

    /// Maintenance is announced as maintenance, whatever its place in the list; it was the
    /// "major outage" banner when the last component was the one under maintenance.
    #[test]
    fn the_banner_names_the_worst_state_and_maintenance_is_not_an_outage() {
        use ComponentState::*;
        let banner = |states: &[ComponentState]| {
            let components: Vec<Component> = states.iter().map(|s| component(*s)).collect();
            banners(&components, false)
        };
        for states in [
            [Operational, UnderMaintenance],
            [UnderMaintenance, Operational],
        ] {
            let shown = banner(&states);
            assert!(
                shown.contains("Scheduled maintenance is in progress"),
                "{shown}"
            );
            assert!(shown.contains("under_maintenance"), "{shown}");
        }
        let shown = banner(&[MajorOutage, UnderMaintenance]);
        assert!(shown.contains("A major outage is under way"), "{shown}");
        let shown = banner(&[Degraded, UnderMaintenance, Operational]);
        assert!(shown.contains("slower than usual"), "{shown}");
        assert!(banner(&[Operational]).contains("All systems operational"));
    }

    #[test]
    fn escaping_and_bar_colours() {
        assert_eq!(
            escape("<b>\"fish\" & 'chips'</b>"),
            "&lt;b&gt;&quot;fish&quot; &amp; &#39;chips&#39;&lt;/b&gt;"
        );
        assert_eq!(bar_class(0, 0), "none");
        assert_eq!(bar_class(86_400, 86_400), "ok");
        assert_eq!(bar_class(85_900, 86_400), "minor");
        assert_eq!(bar_class(83_000, 86_400), "partial");
        assert_eq!(bar_class(1, 86_400), "major");
    }

    #[test]
    fn ninety_bars_with_the_days_that_have_data() {
        let today = 100 * 86_400;
        let days = vec![Uptime {
            start_s: today,
            total_s: 100,
            up_s: 50,
        }];
        let bars = uptime_bars(&days, today);
        assert_eq!(bars.matches("class=\"bar").count(), 90);
        assert_eq!(bars.matches("class=\"bar major\"").count(), 1);
        assert!(
            bars.ends_with("title=\"1970-04-11: 50.00% up\"></span>"),
            "{bars}"
        );
    }
}
