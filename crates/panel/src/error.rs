//! The one error type of the HTTP layer: every 4xx/5xx body is
//! `{"error": {"field": "rules[3].port", "message": "..."}}`, `field` null
//! when no single field is at fault.

use crate::store::{etag, StoreError};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The request field at fault (`name`, `rules[3].sources[0]`, `If-Match`,
    /// `body`), or null.
    pub field: Option<String>,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// An HTTP error with a JSON body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: field.map(str::to_string),
            message: message.into(),
            headers: Vec::new(),
        }
    }
    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }
    pub fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(field), message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, Some("Authorization"), message)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }
    pub fn forbidden(field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, field, message)
    }
    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, None, format!("{what} not found"))
    }
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "internal error; see the panel log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Invalid { field, message } | StoreError::Limit { field, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(&field), message)
            }
            StoreError::Conflict { field, message } => ApiError::new(StatusCode::CONFLICT, field.as_deref(), message),
            StoreError::Forbidden { field, message } => ApiError::new(StatusCode::FORBIDDEN, field.as_deref(), message),
            StoreError::Precondition { current, what } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                Some("If-Match"),
                format!("the {what} changed since you read it: its ETag is now {}; read it again and retry", etag(current)),
            )
            .with_header(header::ETAG, HeaderValue::from_str(&etag(current)).unwrap_or(HeaderValue::from_static("\"\""))),
            e @ (StoreError::Db(_) | StoreError::Migrate(_)) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                field: self.field,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} {field}: {}", self.status, self.message),
            None => write!(f, "{} {}", self.status, self.message),
        }
    }
}
