//! Types parsed at the edge: once a value has one of these types, it is valid.

mod byte_size;
mod chat_body;
mod checksum;
mod cursor;
mod ids;
mod live_content;
mod password;
mod public_url;
mod sha256;
mod states;
mod time;
mod upload_id;
mod upload_metadata;
mod username;
mod viewer_id;

pub use byte_size::ByteSize;
pub use chat_body::ChatBody;
pub use checksum::{ChecksumAlgorithm, UploadChecksum};
pub use cursor::FeedCursor;
pub use ids::{MediaId, PostId};
pub use live_content::LiveContent;
pub use password::Password;
pub use public_url::PublicUrl;
pub use sha256::Sha256Hex;
pub use states::{LiveStatus, UploadState};
pub use time::{http_date, now_millis, rfc3339};
pub use upload_id::UploadId;
pub use upload_metadata::UploadMetadata;
pub use username::Username;
pub use viewer_id::ViewerId;

/// Why a value from the outside was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
