//! On-call over HTTP. For operators (ops token): `GET /api/v1/oncall` (each schedule's person
//! on call now and next, the escalation levels, pages not resolved), `GET /api/v1/pages`, and
//! `POST /api/v1/pages/{id}/ack|resolve`. For the person paged: the signed link of a page,
//! `/pages/{id}/ack|resolve?person&level&expires_ms&signature` — a GET shows a button (so
//! link previews in chat apps change nothing), the POST it sends acts, once. Every change and
//! every refusal is in the audit log (through `paging::audit`); changes go on the incident's
//! timeline.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::html::{escape, page};
use crate::operator::Operator;
use crate::paging::{Link, LinkError, Pager, audit, record};
use crate::refusal::{Refusal, query_or_refuse, refuse, unavailable};
use crate::state::IncidentStatus::Resolved;
use crate::state_pages::Page;
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

fn pager(control: &Control) -> Result<&Pager, Refusal> {
    control.config.pager.as_ref().ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "no_oncall",
            "the deployment file has no [oncall] section",
        )
    })
}

pub(crate) async fn oncall(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let Some(pager) = &control.config.pager else {
        return Ok(Json(
            json!({"configured": false, "schedules": [], "escalation": [], "pages": []}),
        )
        .into_response());
    };
    let now = now_ms();
    let schedules: Vec<_> = pager
        .rotations
        .iter()
        .map(|r| {
            let (next_at, next) = r.next(now);
            json!({"name": r.name, "now": r.on_call(now), "next": next, "next_at_ms": next_at})
        })
        .collect();
    let pages = control.state.pages(true, 100).map_err(unavailable)?;
    Ok(Json(json!({"configured": true, "schedules": schedules,
                   "escalation": pager.config.escalation, "pages": pages}))
    .into_response())
}

/// `GET /api/v1/pages`, newest first.
#[derive(serde::Serialize)]
struct Pages {
    pages: Vec<Page>,
}

pub(crate) async fn pages(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let pages = control.state.pages(false, 200).map_err(unavailable)?;
    Ok(Json(Pages { pages }).into_response())
}

/// Acknowledges or resolves a page as `by`; resolving also resolves its incident if still
/// open. Refusals are audited here; changes by `paging::record`.
async fn act(
    control: &Control,
    id: i64,
    action: &str,
    by: &str,
    via: &str,
) -> Result<Page, Refusal> {
    let result = act_checked(control, id, action, by, via).await;
    if let Err(refusal) = &result {
        refused(control, by, id, action, via, refusal);
    }
    result
}

async fn act_checked(
    control: &Control,
    id: i64,
    action: &str,
    by: &str,
    via: &str,
) -> Result<Page, Refusal> {
    let now = now_ms();
    let missing = || refuse(StatusCode::NOT_FOUND, "not_found", &format!("no page {id}"));
    control
        .state
        .page(id)
        .map_err(unavailable)?
        .ok_or_else(missing)?;
    let changed = match action {
        "ack" => control.state.ack_page(id, by, now),
        "resolve" => control.state.resolve_page(id, by, now),
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "not_found",
                "the action is ack or resolve",
            ));
        }
    }
    .map_err(unavailable)?;
    if !changed {
        return Err(refuse(
            StatusCode::CONFLICT,
            "page_closed",
            &format!("page {id} is not open for {action} (acknowledged or resolved already)"),
        ));
    }
    let page = control
        .state
        .page(id)
        .map_err(unavailable)?
        .ok_or_else(missing)?;
    let (verb, what) = if action == "ack" {
        ("acknowledged", "page.ack")
    } else {
        ("resolved", "page.resolve")
    };
    record(
        control,
        &page,
        by,
        what,
        &format!("Page {verb} by {by} ({via})."),
        now,
    );
    if action == "resolve" {
        // A line players see: no names.
        let message = "The problem is resolved.".to_owned();
        let open = control.state.incidents(true).map_err(unavailable)?;
        if let Some(incident) = open.iter().find(|i| i.id == page.incident_id) {
            control
                .state
                .update_incident(page.incident_id, Resolved, &message, None, now)
                .map_err(unavailable)?;
            control
                .tell_players_about(&incident.component, &message, "info")
                .await;
        }
    }
    Ok(page)
}

pub(crate) async fn operator_action(
    operator: Operator,
    State(control): State<Arc<Control>>,
    PathParam((id, action)): PathParam<(i64, String)>,
) -> Result<Response, Refusal> {
    pager(&control)?;
    let page = act(&control, id, &action, &operator.actor, "API").await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkQuery {
    person: String,
    level: i64,
    expires_ms: i64,
    signature: String,
}

/// The link's fields, checked against its signature and expiry.
fn checked_link(
    control: &Control,
    id: i64,
    action: &str,
    query: LinkQuery,
) -> Result<Link, Refusal> {
    let pager = pager(control)?;
    let link = Link {
        page: id,
        action: action.to_owned(),
        person: query.person,
        level: query.level,
        expires_ms: query.expires_ms,
        signature: query.signature,
    };
    match pager.verify(&link, now_ms()) {
        Ok(()) => Ok(link),
        Err(e @ LinkError::Forged) => {
            Err(refuse(StatusCode::FORBIDDEN, "forged_link", &e.to_string()))
        }
        Err(e @ LinkError::Expired) => {
            Err(refuse(StatusCode::GONE, "expired_link", &e.to_string()))
        }
    }
}

/// Writes a refused action on page `id` to the audit log.
fn refused(control: &Control, actor: &str, id: i64, action: &str, via: &str, refusal: &Refusal) {
    let outcome = format!("refused: {}", refusal.body.error);
    let detail = json!({"via": via});
    audit(
        control,
        actor,
        &format!("page.{action}"),
        id,
        &detail,
        &outcome,
        now_ms(),
    );
}

/// A refusal of a link, written to the audit log under the name the link carries (not
/// trusted: it did not pass the checks, so it is marked `link:` and cut to 64 characters).
fn audited(control: &Control, id: i64, action: &str, person: &str, refusal: Refusal) -> Refusal {
    let actor = format!("link:{}", person.chars().take(64).collect::<String>());
    refused(control, &actor, id, action, "signed link", &refusal);
    refusal
}

pub(crate) async fn link_form(
    State(control): State<Arc<Control>>,
    PathParam((id, action)): PathParam<(i64, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let link = checked_link(&control, id, &action, query_or_refuse(query)?)?;
    let verb = if action == "ack" {
        "Acknowledge"
    } else {
        "Resolve"
    };
    let body = format!(
        "<main class=\"narrow\"><h1>{verb} page #{id}</h1><p>As {}.</p>\
         <form method=\"post\"><button type=\"submit\" id=\"confirm\">{verb}</button></form></main>",
        escape(&link.person)
    );
    Ok(page(&format!("{verb} page #{id}"), "", &body))
}

pub(crate) async fn link_action(
    State(control): State<Arc<Control>>,
    PathParam((id, action)): PathParam<(i64, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let query = query_or_refuse(query)?;
    let person = query.person.clone();
    let link = checked_link(&control, id, &action, query)
        .map_err(|r| audited(&control, id, &action, &person, r))?;
    if !control
        .state
        .use_link(&link.signature, now_ms())
        .map_err(unavailable)?
    {
        let used = refuse(StatusCode::GONE, "used_link", "this link was used already");
        return Err(audited(&control, id, &action, &person, used));
    }
    let page_now = act(&control, id, &action, &link.person, "signed link").await?;
    let body = format!(
        "<main class=\"narrow\"><h1>Page #{id} {}</h1><p id=\"done\">By {} for incident #{}.</p></main>",
        escape(&page_now.status),
        escape(&link.person),
        page_now.incident_id
    );
    Ok(page(&format!("Page #{id}"), "", &body))
}
