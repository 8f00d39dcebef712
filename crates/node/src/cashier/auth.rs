//! Who may call the cashier API, and how often. Only the operator's platform, with the cashier
//! credential: its own secret (never a player's session token nor the ops token), compared in
//! constant time; a wrong one is a 401, which the node's `lockout::guard` counts per address
//! until the address is blocked. Authenticated calls share one rate limit per node, so an
//! over-eager platform cannot starve the players' writes.

use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::extract::required_bearer;
use crate::state::AppState;

/// The cashier's credential and rate limit on a node.
pub struct Cashier {
    token: String,
    limiter: DefaultDirectRateLimiter,
}

impl Cashier {
    /// `token` is the shared secret of the operator's platform (32 characters at least, which
    /// the command line checks); `per_second` calls are allowed, with as large a burst.
    pub fn new(token: String, per_second: NonZeroU32) -> Cashier {
        Cashier {
            token,
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
        }
    }
}

/// A request from the operator's platform.
pub struct CashierAuth;

impl FromRequestParts<AppState> for CashierAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = required_bearer(
            parts,
            "the cashier API needs Authorization: Bearer <cashier token>",
        )?;
        if !croupier_web::same_token(token, &state.cashier.token) {
            tracing::warn!(path = %parts.uri.path(), "cashier call refused: wrong credential");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "wrong cashier token",
            ));
        }
        if state.cashier.limiter.check().is_err() {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many cashier calls on this node; retry in a second",
            ));
        }
        Ok(CashierAuth)
    }
}
