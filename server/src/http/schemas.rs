//! The OpenAPI schemas every router shares: the error body and the error answers common to
//! many routes, raw bytes, and an event of the live stream. Nothing here knows of a router, so
//! routers and the document that assembles them (`openapi.rs`) both depend on it, not on each
//! other.

use utoipa::{
    openapi::{
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type},
        RefOr,
    },
    IntoResponses, PartialSchema, ToSchema,
};

/// `{"error": {"code", "message"}}`: the body of every 4xx and 5xx answer.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes the shape `ApiError` writes.
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The error answers of a route acting on one of the caller's lives or uploads, for a
/// `responses(...)` list.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only describes what `ApiError` answers.
pub enum OwnerErrors {
    #[response(status = 401, description = "`unauthenticated`: no valid bearer token")]
    Unauthenticated(ErrorBody),
    #[response(
        status = 403,
        description = "`forbidden`: another user's live or upload"
    )]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "`not_found`")]
    NotFound(ErrorBody),
    #[response(
        status = 503,
        description = "`storage_unavailable` or `database_unavailable`, with `Retry-After`: the \
                       object store or the database did not answer in time; nothing of the \
                       request was acknowledged (a PATCH's offset did not move), retry"
    )]
    Unavailable(ErrorBody),
}

/// The answer of a tus route to a request without `Tus-Resumable: 1.0.0`.
#[derive(IntoResponses)]
#[response(status = 412, description = "`unsupported_tus_version`")]
#[allow(dead_code)] // Only describes what `ApiError` answers.
pub struct UnsupportedTusVersion(ErrorBody);

/// One Server-Sent Event of a live, as a client reads it: its name and its JSON text.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes what the event stream writes.
pub struct LiveEvent {
    /// `viewers`, `chat` or `ended`.
    #[schema(example = "viewers")]
    event: String,
    /// JSON text: `{"viewers", "peak_viewers"}` for `viewers`, a ChatMessage for `chat`, the
    /// Post for `ended`.
    data: String,
}

/// The inside of [`ErrorBody`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Machine-readable, snake_case (`not_found`, `offset_mismatch`, …).
    #[schema(example = "not_found")]
    code: String,
    /// For humans.
    message: String,
}

/// Raw bytes: a recording, a range of one, a chunk of an upload, a poster.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}
