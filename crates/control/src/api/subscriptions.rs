//! Subscriptions over HTTP. Public: `POST /api/v1/subscriptions` (`{"email"}` or
//! `{"webhook"}`, and the `components` wanted; rate limited per requester and in all; always
//! the same answer, so it tells nobody whether an address is known) and the signed links
//! `/subscriptions/{id}/confirm` and `/unsubscribe` (a GET shows a button; the POST acts,
//! once). For operators: `GET /api/v1/subscriptions`, the only place addresses are shown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::COMPONENTS;
use crate::html::page;
use crate::operator::Operator;
use crate::refusal::{Refusal, parse, query_or_refuse, refuse, unavailable};
use crate::subscriptions::Subscriptions;
use crate::{Control, now_ms};
use croupier_web::extract::PathParam;

/// An address gets at most one confirmation message this often.
const ASK_GAP_MS: i64 = 10 * 60_000;

fn subscriptions(control: &Control) -> Result<&Subscriptions, Refusal> {
    control.config.subscriptions.as_ref().ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "no_subscriptions",
            "this status page offers no subscriptions",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    email: Option<String>,
    webhook: Option<String>,
    /// Component ids; none or empty for all.
    #[serde(default)]
    components: Vec<String>,
}

fn invalid(message: &str) -> Refusal {
    refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

/// (kind, address, components) of a request, checked.
fn checked(
    subscriptions: &Subscriptions,
    new: NewSubscription,
) -> Result<(&'static str, String, Vec<String>), Refusal> {
    if new.components.len() > COMPONENTS.len()
        || new
            .components
            .iter()
            .any(|c| !COMPONENTS.iter().any(|(id, _)| id == c))
    {
        return Err(invalid(
            "components are among wallet, dice, roulette, slot, blackjack, lobby",
        ));
    }
    match (new.email, new.webhook) {
        (Some(email), None) => {
            if !subscriptions.has_mail() {
                return Err(invalid("e-mail subscriptions are not offered here"));
            }
            if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
                return Err(invalid("email is an address like player@example.com"));
            }
            Ok(("email", email, new.components))
        }
        (None, Some(url)) => {
            if url.len() > 2_000 || !subscriptions.webhook_allowed(&url) {
                return Err(invalid("webhook is an https:// URL"));
            }
            Ok(("webhook", url, new.components))
        }
        _ => Err(invalid("give email or webhook")),
    }
}

pub(crate) async fn subscribe(
    State(control): State<Arc<Control>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let subscriptions = subscriptions(&control)?;
    let new: NewSubscription = parse(&body)?;
    let (kind, address, components) = checked(subscriptions, new)?;
    // Only a valid request, which would write and send, spends a share. `croupier_web::serve`
    // gives every request its peer; only a router called directly has none.
    let requester = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip());
    if !subscriptions.admit(requester) {
        return Err(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many subscription requests; try again in a minute",
        ));
    }
    let added = control
        .state
        .add_subscriber(kind, &address, &components, now_ms(), ASK_GAP_MS)
        .map_err(unavailable)?;
    if let Some(subscriber) = added.filter(|s| s.status == "pending") {
        let control = control.clone();
        tokio::spawn(async move {
            if let Some(subscriptions) = &control.config.subscriptions {
                subscriptions.ask_to_confirm(&control, &subscriber).await;
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "check_your_inbox",
                    "message": "If the address can receive it, a confirmation link is on its way."})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkQuery {
    signature: String,
}

fn forged() -> Refusal {
    refuse(
        StatusCode::FORBIDDEN,
        "invalid_link",
        "this link is not valid",
    )
}

/// The subscriber a link names, when its signature holds.
fn linked(
    control: &Control,
    id: i64,
    action: &str,
    query: &LinkQuery,
) -> Result<crate::state_subscriptions::Subscriber, Refusal> {
    let subscriptions = subscriptions(control)?;
    if action != "confirm" && action != "unsubscribe" {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            "the action is confirm or unsubscribe",
        ));
    }
    let subscriber = control
        .state
        .subscriber(id)
        .map_err(unavailable)?
        .ok_or_else(forged)?;
    if !subscriptions.verify(action, &subscriber, &query.signature) {
        return Err(forged());
    }
    Ok(subscriber)
}

pub(crate) async fn link_form(
    State(control): State<Arc<Control>>,
    PathParam((id, action)): PathParam<(i64, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    linked(&control, id, &action, &query_or_refuse(query)?)?;
    let verb = if action == "confirm" {
        "Confirm the subscription"
    } else {
        "Unsubscribe"
    };
    Ok(page(
        verb,
        "",
        &format!(
            "<main class=\"narrow\"><h1>{verb}</h1><form method=\"post\"><button type=\"submit\">{verb}</button></form></main>"
        ),
    ))
}

pub(crate) async fn link_action(
    State(control): State<Arc<Control>>,
    PathParam((id, action)): PathParam<(i64, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let subscriber = linked(&control, id, &action, &query_or_refuse(query)?)?;
    let done = if action == "confirm" {
        if !control
            .state
            .confirm_subscriber(subscriber.id, now_ms())
            .map_err(unavailable)?
        {
            return Err(refuse(
                StatusCode::GONE,
                "used_link",
                "this subscription is confirmed already",
            ));
        }
        "Subscribed: news of the status page will come to this address."
    } else {
        control
            .state
            .remove_subscriber(subscriber.id)
            .map_err(unavailable)?;
        "Unsubscribed: nothing more will be sent, and the address is forgotten."
    };
    tracing::info!(subscriber = subscriber.id, action, "subscription changed");
    Ok(page(
        "Subscription",
        "",
        &format!("<main class=\"narrow\"><h1 id=\"done\">{done}</h1></main>"),
    ))
}

pub(crate) async fn list(
    _: Operator,
    State(control): State<Arc<Control>>,
) -> Result<Response, Refusal> {
    let subscribers = control.state.subscribers(false).map_err(unavailable)?;
    Ok(Json(json!({"subscribers": subscribers})).into_response())
}
