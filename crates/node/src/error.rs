//! API errors: every refusal is a status code plus a JSON body `{"error": code, "message": …}`
//! that says what is wrong (`croupier_web::wire::Refusal` answers it). Refusals never move money.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use croupier_games::BetError;
use croupier_ledger::LedgerError;
use croupier_web::wire::{self, Refusal};

use crate::rounds::RoundError;

/// Seconds a client should wait before retrying a refused request.
pub const RETRY_AFTER_SECS: u32 = 2;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn draining() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is draining for maintenance and takes no new rounds; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Refusal::new(self.status, self.code, self.message).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.code == "draining" {
            response
                .headers_mut()
                .insert(wire::DRAINING, HeaderValue::from_static("true"));
        }
        response
    }
}

impl From<BetError> for ApiError {
    fn from(e: BetError) -> Self {
        let status = match e {
            BetError::UnknownGame(_) => StatusCode::NOT_FOUND,
            BetError::ActionNotAllowed { .. } => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InsufficientFunds {
                balance, needed, ..
            } => ApiError::unprocessable(
                "insufficient_funds",
                format!("balance {balance} is less than the {needed} needed"),
            ),
            LedgerError::IdempotencyKeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            ),
            LedgerError::NotFound(what) => ApiError::not_found(what),
            LedgerError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, "conflict", what),
            LedgerError::InvalidAmount(amount) => ApiError::unprocessable(
                "invalid_amount",
                format!("amount {amount} must be a positive number of minor units"),
            ),
            LedgerError::Unavailable(what) => {
                tracing::warn!(error = %what, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the wallet store is unavailable; retry shortly",
                )
            }
            LedgerError::Storage(what) => {
                tracing::error!(error = %what, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the wallet store failed; nothing was changed",
                )
            }
        }
    }
}

impl From<RoundError> for ApiError {
    fn from(e: RoundError) -> Self {
        match e {
            RoundError::Ledger(e) => e.into(),
            RoundError::Bet(e) => e.into(),
            RoundError::Settled(_) => {
                ApiError::new(StatusCode::CONFLICT, "round_settled", e.to_string())
            }
            RoundError::OpenRounds => {
                ApiError::new(StatusCode::CONFLICT, "open_rounds", e.to_string())
            }
            RoundError::NotAHand(_) => {
                ApiError::new(StatusCode::CONFLICT, "action_not_allowed", e.to_string())
            }
            RoundError::Unreadable { .. } => LedgerError::Storage(e.to_string()).into(),
        }
    }
}
