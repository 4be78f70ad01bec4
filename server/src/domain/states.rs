//! Where an upload and a live are in their lives, as the database stores them (lowercase words).

use std::{fmt, str::FromStr};

use super::ParseError;

/// Declares a state enum stored as one lowercase word per variant.
macro_rules! stored_state {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The word the database stores (and the API shows).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(raw: &str) -> Result<Self, ParseError> {
                match raw {
                    $($word => Ok(Self::$variant),)+
                    other => Err(ParseError::new(format!(
                        concat!("unknown ", stringify!($name), " {:?}"),
                        other
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_state!(
    /// An upload's state: only an open upload accepts bytes.
    UploadState {
        /// Accepting bytes.
        Open = "open",
        /// Its bytes became the live's recording (or the live ended without needing them).
        Finalized = "finalized",
        /// Deleted by its owner (tus termination).
        Terminated = "terminated",
        /// Silent past its expiry; its bytes are deleted.
        Expired = "expired",
        /// Its live was interrupted but could not be finalized; its bytes are kept for a human.
        Failed = "failed",
    }
);

stored_state!(
    /// A live's status (`live_status` in the API).
    LiveStatus {
        /// Recording now.
        Live = "live",
        /// Stopped by its streamer.
        Ended = "ended",
        /// Ended without a stop (the browser went away).
        Interrupted = "interrupted",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_words() {
        for state in [
            UploadState::Open,
            UploadState::Finalized,
            UploadState::Terminated,
            UploadState::Expired,
            UploadState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<UploadState>(), Ok(state));
        }
        for status in [LiveStatus::Live, LiveStatus::Ended, LiveStatus::Interrupted] {
            assert_eq!(status.to_string().parse::<LiveStatus>(), Ok(status));
        }
        assert!("Open".parse::<UploadState>().is_err());
        assert!("paused".parse::<LiveStatus>().is_err());
    }
}
