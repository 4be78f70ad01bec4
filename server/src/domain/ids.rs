//! Ids the database numbers: posts (a live is a post, so a `live_id` is a [`PostId`]) and media.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares an id type over the database's `BIGINT`, so that one kind of id cannot be passed
/// where another is expected.
macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id numbered `raw` by the database (or named in a request).
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            /// The number, as the database and the API write it.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

row_id!(
    /// A post's id; a live's id (`live_id`) is its post's.
    PostId
);

row_id!(
    /// A media's id (a finalized recording).
    MediaId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_and_writes_as_its_number() {
        let id: PostId = serde_json::from_str("42").unwrap();
        assert_eq!(id, PostId::new(42));
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(MediaId::new(-7).to_string(), "-7");
    }
}
